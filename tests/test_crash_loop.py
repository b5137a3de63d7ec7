"""kill -9 at every step boundary, over and over, on a mixed backlog: nothing lost, nothing decided twice.

Real `secirbot run --once` processes against the real Dovecot and SMTP sink die by SIGKILL at the k-th
passage of one boundary (before a message is processed, after its commit, after an SMTP 250, before the
IMAP move, inside an IANA lookup's transaction), for k = 1, 2, 3 and every boundary in turn; then one clean
run. The store and the mail that went out are then checked against what a single clean run would do.
"""

from __future__ import annotations

from collections import Counter

from tests.harness import BOT, SECRETARIAT, World, new_message
from tests.helpers_intake import note, run_once_crashing

COMMAND = "secir-request@lists.example.org"

# (name, patch): each dies at the K-th passage of its point (K is formatted in).
_BOUNDARIES = {
    "before-process": """\
import secirbot.daemon
_orig, _n = secirbot.daemon.process, [0]
def _die(*a, **kw):
    _n[0] += 1
    if _n[0] == {k}:
        os.kill(os.getpid(), signal.SIGKILL)
    return _orig(*a, **kw)
secirbot.daemon.process = _die
""",
    "after-commit": """\
import secirbot.daemon
_orig, _n = secirbot.daemon.process, [0]
def _die(*a, **kw):
    out = _orig(*a, **kw)
    _n[0] += 1
    if _n[0] == {k}:
        os.kill(os.getpid(), signal.SIGKILL)
    return out
secirbot.daemon.process = _die
""",
    "after-smtp-250": """\
import secirbot.outbox
_orig, _n = secirbot.outbox.Outbox._record, [0]
def _die(self, row, attempt, report):
    if attempt.delivered:
        _n[0] += 1
        if _n[0] == {k}:
            os.kill(os.getpid(), signal.SIGKILL)
    return _orig(self, row, attempt, report)
secirbot.outbox.Outbox._record = _die
""",
    "before-imap-move": """\
import secirbot.mailbox
_orig, _n = secirbot.mailbox.Mailbox.file, [0]
def _die(self, uids, where):
    if uids:
        _n[0] += 1
        if _n[0] == {k}:
            os.kill(os.getpid(), signal.SIGKILL)
    return _orig(self, uids, where)
secirbot.mailbox.Mailbox.file = _die
""",
    "inside-lookup": """\
import secirbot.workflow
_orig, _n = secirbot.workflow.first_lookup, [0]
def _die(*a, **kw):
    _orig(*a, **kw)
    _n[0] += 1
    if _n[0] == {k}:
        os.kill(os.getpid(), signal.SIGKILL)
secirbot.workflow.first_lookup = _die
""",
}


def crash_runs(world: World, name: str) -> int:
    """Runs killed at the 1st, then the 2nd passage of one boundary; returns how many died."""
    config = world.write_config()
    killed = 0
    for k in (1, 2):
        done = run_once_crashing(config, _BOUNDARIES[name].format(k=k))
        assert done.returncode in (-9, 0), (name, k, done.stderr[-2000:])
        killed += done.returncode == -9
    return killed


def clean_run(world: World) -> None:
    done = run_once_crashing(world.write_config(), "")
    assert done.returncode == 0, done.stderr[-2000:]


def test_kill_9_at_every_boundary_loses_nothing_and_decides_nothing_twice(world: World) -> None:
    world.rules["requests"] = {"seats_per_cctld": 20, "max_per_cctld_per_hour": 20, "max_per_hour": 50}
    world.settings["imap.batch_size"] = 2
    requesters: list[str] = []
    for round_, name in enumerate(_BOUNDARIES):  # a fresh mixed backlog for every boundary
        for i in range(2):
            address = f"req{round_}{i}@registry.example"
            requesters.append(address)
            world.deliver(new_message(f"P {round_}{i} <{address}>", BOT, "subscribe .nl", "Name: P\nCSIRT.\n"))
        world.deliver(note(f"Bob <bob{round_}@example.org>"))
        world.deliver(
            new_message(
                f"Away <away{round_}@example.net>",
                BOT,
                "Automatic reply: out of office",
                "Back Monday.\n",
                Auto_Submitted="auto-replied",
            )
        )
        assert crash_runs(world, name) >= 1, name  # the boundary really was crossed, and killed
    clean_run(world)

    store = world.bot().store
    assert store.one("SELECT COUNT(*) AS n FROM messages")["n"] == 20  # each message recorded once
    assert len(world.mailbox.uids("INBOX")) == 0 and len(world.mailbox.uids("Processed")) == 20
    rows = store.all("SELECT requester, state FROM requests ORDER BY id")
    assert sorted(r["requester"] for r in rows) == sorted(requesters) and {r["state"] for r in rows} == {"pending"}
    # one acknowledgement, one Secretariat copy and two approval requests per request: composed once each
    purposes = Counter(
        (r["request_id"], r["purpose"])
        for r in store.all("SELECT request_id, purpose FROM outbox WHERE request_id IS NOT NULL")
    )
    assert {p for _, p in purposes} == {"request-received", "request-copy", "approval-request"}, purposes
    assert all(n == (2 if p == "approval-request" else 1) for (_, p), n in purposes.items()), purposes
    assert len({request_id for request_id, _ in purposes}) == 10
    assert store.one("SELECT COUNT(*) AS n FROM outbox WHERE state != 'sent'")["n"] == 0
    # what went out: every queued mail at least once; a re-send after a kill is the same bytes
    by_id: dict[str, set[bytes]] = {}
    for captured in world.sink.messages:
        by_id.setdefault(str(captured.message["Message-ID"]), set()).add(captured.data)
    assert len(by_id) == store.one("SELECT COUNT(*) AS n FROM outbox")["n"]
    assert all(len(versions) == 1 for versions in by_id.values())
    assert not [c for c in world.sink.messages if c.rcpt_tos[0].startswith("away")]

    # Phase 2: the contacts answer (APPROVE or DENY), again under kill -9 at every boundary.
    approvals = {}
    for captured in world.sink.messages:
        subject = " ".join(str(captured.message["Subject"]).split())
        if subject.startswith("Approval needed:") and captured.rcpt_tos == ["admin@sidn.nl"]:
            approvals[subject.split(":", 1)[1].split()[0]] = captured.message
    assert sorted(approvals) == sorted(requesters)
    world.sink.clear()
    expected = {}
    for round_, name in enumerate(_BOUNDARIES):
        for i, word in enumerate(("APPROVE", "DENY")):
            address = requesters[2 * round_ + i]
            approval = approvals[address]
            world.deliver(
                new_message(
                    "Roelof Meijer <admin@sidn.nl>",
                    str(approval["Reply-To"]),
                    "Re: " + str(approval["Subject"]),
                    f"{word}\n",
                    In_Reply_To=str(approval["Message-ID"]),
                )
            )
            expected[address] = "approved" if word == "APPROVE" else "denied"
        killed = crash_runs(world, name)
        assert killed >= 1 or name == "inside-lookup", name  # no IANA lookup is left to kill in phase 2
    clean_run(world)

    world.restart()
    store = world.bot().store
    assert {r["requester"]: r["state"] for r in store.all("SELECT requester, state FROM requests")} == expected
    decided = Counter(
        r["request_id"] for r in store.all("SELECT request_id FROM audit WHERE action = 'request-decided'")
    )
    assert len(decided) == 10 and set(decided.values()) == {1}  # each decided exactly once
    assert len(store.all("SELECT id FROM outbox WHERE purpose = 'mailman-command'")) == 5
    sent_commands = {str(c.message["Message-ID"]) for c in world.sink.messages if c.rcpt_tos == [COMMAND]}
    assert len(sent_commands) == 5  # five distinct commands; a re-send after a kill is the same one
    assert store.one("SELECT COUNT(*) AS n FROM outbox WHERE state != 'sent'")["n"] == 0
    assert store.one("SELECT COUNT(*) AS n FROM messages")["n"] == 30
    assert any(c.rcpt_tos == [SECRETARIAT] for c in world.sink.messages)
