"""The Secretariat's commands: `secirbot requests`, `secirbot show`, `secirbot approve` and `secirbot deny`.

Run in-process (`secirbot.cli.main`) against the world's configuration file, as the Secretariat would run
them beside the bot. A decision made here is recorded and audited like one made by mail, and its notices
(and the Mailman command) are delivered by the command itself when no bot runs. The commands use the real
clock, not the world's: their times are checked for form only.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator

import pytest

from secirbot.cli import main
from tests.clients import client_reply
from tests.flow import (
    ADMIN_FROM,
    COMMAND_ADDRESS,
    NL_ADMIN,
    NL_TECH,
    REQUESTER,
    body,
    by_rcpt,
    flat,
    one,
    open_request,
    request,
    summary,
)
from tests.harness import SECRETARIAT, World

ACTOR = "cli:alice"
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"


@pytest.fixture(autouse=True)
def operator(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The Secretariat's login name, and the root logger restored after the CLI reconfigured it."""
    monkeypatch.setenv("USER", "alice")
    monkeypatch.delenv("SUDO_USER", raising=False)
    for name in [n for n in os.environ if n.startswith("SECIRBOT_")]:
        monkeypatch.delenv(name)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def cli(world: World, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    world.write_config()
    capsys.readouterr()
    code = main(["--config", str(world.config_file), *args])
    out, err = capsys.readouterr()
    return code, out, err


# --- reading ------------------------------------------------------------------------------------------


def test_requests_lists_every_request_and_filters_by_state(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    nl = open_request(world)
    open_request(world, sender="Ivan <ivan@cctld.example>", subject_line="subscribe .рф")
    world.deliver(client_reply("gmail", nl.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"))
    world.run_once()

    code, out, _ = cli(world, capsys, "requests")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATE", "CCTLD", "REQUESTER", "CREATED", "DECIDED", "BY"]
    assert [ln.split() for ln in lines[1:]] == [
        ["1", "approved", ".nl", REQUESTER, "2026-11-26T09:00:00Z", NL_ADMIN],
        ["2", "pending", ".рф", "(xn--p1ai)", "ivan@cctld.example", "2026-11-26T09:00:00Z"],
    ]

    code, out, _ = cli(world, capsys, "requests", "--state", "pending", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["id"], r["state"], r["cctld"], r["cctld_display"], r["requester"], r["decided_by"]) for r in rows] == [
        (2, "pending", "xn--p1ai", ".рф (xn--p1ai)", "ivan@cctld.example", None)
    ]

    code, out, _ = cli(world, capsys, "requests", "--state", "denied")
    assert (code, out.strip()) == (0, "no requests in state denied")


def test_show_tells_the_whole_story_of_a_request(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    opened = open_request(world)
    world.deliver(client_reply("outlook", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "approved?"))
    world.run_once()
    world.deliver(client_reply("outlook", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"))
    world.clock.advance(hours=1)
    world.run_once()

    code, out, _ = cli(world, capsys, "show", "1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Request #1: jan@registry.example for .nl"
    assert lines[1] == "  state:     approved (APPROVE by admin@sidn.nl via mail at 2026-11-26T10:00:00Z)"
    assert "  name:      Jan Jansen" in lines
    assert "  mailman:   queued" in lines
    assert "  their words (unverified):" in lines and "    | Role: CSIRT lead" in lines
    approvers = [ln.split() for ln in lines if ln.startswith("    ") and "reminders:" in ln]
    assert [(a[0], a[1], a[2]) for a in approvers] == [
        (NL_ADMIN, "administrative", "used"),
        (NL_TECH, "technical", "closed"),
    ]
    timeline = lines[lines.index("  timeline:") + 1 :]
    labels = [" ".join(ln.split()[1:]) for ln in timeline]
    # In order: opened, both asked, the unclear answer, the decision, the Mailman command sent.
    order = [
        "request opened",
        "approval requested bot approver=admin@sidn.nl",
        "approval requested bot approver=tech@sidn.nl",
        "unclear answer, clarification asked",
        "DECIDED admin@sidn.nl",
        "purpose=mailman-command",
    ]
    positions = [next(i for i, label in enumerate(labels) if label.startswith(o) or o in label) for o in order]
    assert positions == sorted(positions)
    decided = next(ln for ln in timeline if "DECIDED" in ln)
    assert "decision=APPROVE" in decided and "via=mail" in decided and "rule=token+from+authentication" in decided

    code, out, _ = cli(world, capsys, "show", "1", "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["id"], data["state"], data["decided_by"], data["decided_via"]) == (1, "approved", NL_ADMIN, "mail")
    assert [m["kind"] for m in data["messages"]] == ["request", "reply", "reply"]
    assert [m["detail"] for m in data["messages"]] == ["request-opened", "clarification-asked", "decided:approve"]
    purposes = [o["purpose"] for o in data["outbox"]]
    assert purposes.count("approval-request") == 2 and purposes.count("mailman-command") == 1
    assert all(o["state"] == "sent" for o in data["outbox"])
    assert data["snapshot"]["source"] == "whois"

    code, out, err = cli(world, capsys, "show", "99")
    assert (code, out, err.strip()) == (1, "", "error: no request 99")


# --- deciding -----------------------------------------------------------------------------------------


def test_approve_by_cli_is_audited_and_notifies_like_a_mail_decision(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    opened = open_request(world)
    code, out, err = cli(world, capsys, "approve", "1")
    assert code == 0
    assert out.strip() == f"request 1: APPROVE recorded by {ACTOR}"
    assert "notices: 5 sent, 0 deferred, 0 failed" in err
    sent = world.sent()
    assert summary(sent) == sorted(
        [
            (COMMAND_ADDRESS, ""),
            (REQUESTER, "Approved: your request to join the ccTLD security list for .nl [#1]"),
            (SECRETARIAT, "APPROVE: jan@registry.example for .nl [#1]"),
            (NL_ADMIN, "Decided: jan@registry.example for .nl [#1]"),
            (NL_TECH, "Decided: jan@registry.example for .nl [#1]"),
        ]
    )
    assert body(one(sent, COMMAND_ADDRESS)).splitlines() == ["join address=jan@registry.example digest=no", "end"]
    assert re.search(rf"was approved by the Secretariat on {WHEN}", flat(one(sent, REQUESTER)))
    secretariat = flat(one(sent, SECRETARIAT))
    assert f"By: {ACTOR} (cli)" in secretariat
    assert "Rule: secretariat-cli" in secretariat and f"Check: operator: {ACTOR}" in secretariat
    for approver in (NL_ADMIN, NL_TECH):
        assert re.search(rf"has been decided: APPROVE by the Secretariat on {WHEN}", flat(one(sent, approver)))

    data = request(world)
    assert (data["state"], data["decision"], data["decided_by"], data["decided_via"], data["mailman_status"]) == (
        "approved",
        "APPROVE",
        ACTOR,
        "cli",
        "queued",
    )
    assert [a["state"] for a in data["approvers"]] == ["closed", "closed"]
    decided = [t for t in data["timeline"] if t["action"] == "request-decided"]
    assert len(decided) == 1
    assert decided[0]["actor"] == ACTOR
    details = decided[0]["details"]
    assert (details["decision"], details["via"], details["rule"], details["checks"], details["snapshot_id"]) == (
        "APPROVE",
        "cli",
        "secretariat-cli",
        {"operator": ACTOR},
        data["snapshot_id"],
    )

    # An approver who answers afterwards hears who decided, and nothing else happens.
    world.clock.advance(hours=1)
    world.deliver(client_reply("gmail", opened.approvals[NL_TECH].message, f"Marc <{NL_TECH}>", "DENY"))
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [(NL_TECH, "Already decided: jan@registry.example for .nl [#1]")]
    assert re.search(rf"was already decided: APPROVE by the Secretariat on {WHEN}", flat(sent[0]))
    assert request(world)["state"] == "approved"


@pytest.mark.parametrize("tell", [False, True])
def test_deny_by_cli_tells_everyone_and_the_reason_as_configured(
    world: World, capsys: pytest.CaptureFixture[str], tell: bool
) -> None:
    world.rules["decisions"] = {"tell_requester_deny_reason": tell}
    open_request(world)
    reason = "Not known to the registry's security team."
    code, out, _ = cli(world, capsys, "deny", "1", "--reason", reason)
    assert (code, out.strip()) == (0, f"request 1: DENY recorded by {ACTOR}")
    sent = world.sent()
    assert summary(sent) == sorted(
        [
            (REQUESTER, "Not approved: your request to join the ccTLD security list for .nl [#1]"),
            (SECRETARIAT, "DENY: jan@registry.example for .nl [#1]"),
            (NL_ADMIN, "Decided: jan@registry.example for .nl [#1]"),
            (NL_TECH, "Decided: jan@registry.example for .nl [#1]"),
        ]
    )
    assert f"  | {reason}" in body(one(sent, SECRETARIAT)).splitlines()
    assert (f"  | {reason}" in body(one(sent, REQUESTER)).splitlines()) is tell
    data = request(world)
    assert (data["state"], data["decided_by"], data["decision_reason"], data["mailman_status"]) == (
        "denied",
        ACTOR,
        reason,
        None,
    )


def test_cli_refuses_what_cannot_be_decided(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    open_request(world)
    assert cli(world, capsys, "approve", "1")[0] == 0
    world.sent()

    code, out, err = cli(world, capsys, "deny", "1", "--reason", "changed my mind")
    assert (code, out) == (1, "")
    assert re.fullmatch(rf"error: request 1 was already decided: APPROVE by {ACTOR} at \S+Z", err.strip())
    code, out, err = cli(world, capsys, "approve", "42")
    assert (code, err.strip()) == (1, "error: no request 42")
    with pytest.raises(SystemExit) as exc:
        cli(world, capsys, "deny", "1")  # a denial needs its reason
    assert exc.value.code == 2
    assert world.sent() == []
    assert request(world)["decision"] == "APPROVE"
    assert [t["action"] for t in request(world)["timeline"]].count("request-decided") == 1


def test_cli_cannot_decide_an_expired_request(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    open_request(world)
    world.clock.advance(days=15)
    world.run_once()
    world.sent()
    code, _, err = cli(world, capsys, "approve", "1")
    assert (code, err.strip()) == (1, "error: request 1 is expired; only open requests can be decided")
    assert world.sent() == []
    assert request(world)["state"] == "expired"


def test_cli_decides_a_request_nobody_could_be_asked_about(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    fi = "firootadmin@traficom.fi"
    opened = open_request(world, sender=f"Domain Names <{fi}>", subject_line="subscribe .fi")
    assert opened.approvals == {}
    code, _, _ = cli(world, capsys, "approve", "1")
    assert code == 0
    sent = world.sent()
    assert summary(sent) == sorted(
        [
            (COMMAND_ADDRESS, ""),
            (fi, "Approved: your request to join the ccTLD security list for .fi [#1]"),
            (SECRETARIAT, "APPROVE: firootadmin@traficom.fi for .fi [#1]"),
        ]
    )
    assert body(one(sent, COMMAND_ADDRESS)).splitlines()[0] == f"join address={fi} digest=no"


def test_cli_deny_of_a_request_waiting_for_iana_stops_its_retries(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.whois.modes["nl"] = "empty"
    world.rdap.modes["nl"] = "500"
    open_request(world)
    assert request(world)["state"] == "resolving"
    assert cli(world, capsys, "deny", "1", "--reason", "Duplicate of a paper application.")[0] == 0
    assert sorted(by_rcpt(world.sent())) == [REQUESTER, SECRETARIAT]  # nobody was asked, so nobody else is told
    # IANA answers again later: nobody is asked about a request already decided.
    world.whois.modes.clear()
    world.rdap.modes.clear()
    world.clock.advance(hours=2)
    world.run_once()
    assert world.sent() == []
    assert world.whois.counts["nl"] == 1
    assert request(world)["state"] == "denied"
