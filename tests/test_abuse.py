"""Floods, end to end on the real mailbox: what reaches IANA contacts stays within the configured limits,
what goes back to (maybe forged) senders is bounded in total, and the Secretariat gets one alert, not a
thousand. Every message is still filed and recorded.
"""

from __future__ import annotations

from collections import Counter

from secirbot import tokens
from secirbot.iana.names import all_cctlds
from tests.flow import NL_ADMIN, NL_TECH, open_request, subject
from tests.harness import BOT, SECRETARIAT, World, new_message

PAUSED = "Automatic replies paused: more than 60 in the last hour at join@lists.example.org"


def deliver_many(world: World, messages: list[bytes]) -> None:
    with world.mailbox.session() as client:
        for raw in messages:
            client.append("INBOX", raw)


def request_bytes(sender: str, cctld: str = ".nl") -> bytes:
    return bytes(new_message(sender, BOT, f"subscribe {cctld}", "Name: X\nI work on its security.\n"))


def approvals_sent(sent: list) -> list[str]:
    return [m.rcpt_tos[0] for m in sent if subject(m).startswith(("Approval needed:", "Reminder: Approval"))]


def test_a_thousand_senders_asking_for_one_cctld(world: World) -> None:
    world.settings["imap.batch_size"] = 200
    deliver_many(world, [request_bytes(f"Person {i} <p{i:04d}@flood.example>") for i in range(1000)])
    report = world.run_once()
    sent = world.sent()
    assert (report.processed, report.failed) == (1000, 0)
    assert len(world.mailbox.uids("Processed")) == 1000
    # rules: 3 requests per ccTLD and hour (and 3 seats): the IANA contacts get 3 requests' mail, no more.
    assert Counter(approvals_sent(sent)) == {NL_ADMIN: 3, NL_TECH: 3}
    to_secretariat = sorted(subject(m) for m in sent if m.rcpt_tos == [SECRETARIAT])
    assert [s for s in to_secretariat if not s.startswith("New request #")] == [PAUSED]  # one alert
    assert len(to_secretariat) == 4
    to_senders = [m for m in sent if m.rcpt_tos[0].endswith("@flood.example")]
    assert len(to_senders) <= 3 + 60  # 3 acknowledgements, then the total reply budget
    store = world.bot().store
    assert store.one("SELECT COUNT(*) AS n FROM messages")["n"] == 1000
    assert store.one("SELECT COUNT(*) AS n FROM requests")["n"] == 3


def test_a_thousand_requests_from_one_sender(world: World) -> None:
    world.settings["imap.batch_size"] = 200
    deliver_many(world, [request_bytes("Eve <eve@flood.example>") for _ in range(1000)])
    report = world.run_once()
    sent = world.sent()
    assert report.processed == 1000 and len(world.mailbox.uids("Processed")) == 1000
    assert Counter(approvals_sent(sent)) == {NL_ADMIN: 1, NL_TECH: 1}
    to_eve = [subject(m) for m in sent if m.rcpt_tos == ["eve@flood.example"]]
    # the acknowledgement, then one refusal ("already pending") a day: Message-IDs differ, so none is a
    # duplicate of another; the per-sender limit holds them.
    assert len(to_eve) == 2
    assert [subject(m) for m in sent if m.rcpt_tos == [SECRETARIAT]] == ["New request #1: eve@flood.example for .nl"]


def test_requests_for_every_cctld_stay_within_the_hourly_limit(world: World) -> None:
    world.rules["pilot"] = {"enabled": False, "cctlds": []}
    world.rules["requests"] = {"seats_per_cctld": 3, "max_per_cctld_per_hour": 3, "max_per_hour": 20}
    cctlds = [name.ascii for name in all_cctlds()]  # every delegated ccTLD, IDNs in their xn-- form
    deliver_many(world, [request_bytes(f"P <p{i}@flood.example>", "." + c) for i, c in enumerate(cctlds)])
    world.settings["imap.batch_size"] = 200
    report = world.run_once()
    sent = world.sent()
    assert report.processed == len(cctlds)
    store = world.bot().store
    assert store.one("SELECT COUNT(*) AS n FROM requests")["n"] == 20  # max_per_hour over all ccTLDs
    # at most the contacts of 20 requests were written to
    assert len(approvals_sent(sent)) <= 20 * 2


def test_a_burst_of_guessed_tokens_decides_nothing_and_alerts_once(world: World) -> None:
    opened = open_request(world)
    guesses = [
        bytes(
            new_message(
                f"G <g{i}@flood.example>", tokens.reply_address(BOT, tokens.mint()), "Re: Approval needed", "APPROVE\n"
            )
        )
        for i in range(30)
    ]
    deliver_many(world, guesses)
    world.run_once()
    sent = world.sent()
    alerts = [subject(m) for m in sent if m.rcpt_tos == [SECRETARIAT]]
    assert alerts == ["Someone may be guessing reply addresses at join@lists.example.org: 20 in the last hour"]
    assert world.bot().store.one("SELECT state FROM requests WHERE id = 1")["state"] == "pending"
    assert opened.approvals  # the genuine request's approvers were asked and still hold their tokens
    assert len(world.mailbox.uids("Processed")) == 31
