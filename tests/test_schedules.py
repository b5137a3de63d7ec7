"""Time-driven work on the world's controllable clock: reminders, escalation (silence, a real bounce, a real
out-of-office reply, an undeliverable approval request), expiry, the weekly digest, IANA retries and outbox
retries. Nothing here sleeps: the clock moves, `run_once` (the daemon's own pass) does what is due.

Every due time lives in the store, so the tests also build a new bot (`world.restart()`) between passes, as a
daemon restarted after downtime would be: work that fell due while it was down runs once, never twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from secirbot.sandbox.smtp_sink import Captured
from tests.flow import (
    COMMAND_ADDRESS,
    NL_ADMIN,
    NL_TECH,
    REQUESTER,
    audit_actions,
    body,
    by_rcpt,
    flat,
    one,
    open_request,
    request,
    subject,
    summary,
)
from tests.harness import BOT, SECRETARIAT, World, reply_to

MESSAGES = Path(__file__).resolve().parent / "messages"

APPROVAL = "Approval needed: jan@registry.example asks to join the ccTLD security list for .nl [#1]"
REMINDER = "Reminder: " + APPROVAL
SECRETARIAT_ALERT = "No answer from the contacts of .nl: request #1"


def escalating(world: World, **rules: Any) -> None:
    """Administrative contacts are asked first, technical ones only on escalation; no weekly digest unless
    asked for (it would add a mail to every jump over a Monday)."""
    world.rules["approvers"] = {"roles": ["administrative", "technical"], "ask_first": ["administrative"]}
    world.rules["digest"] = {"enabled": False}
    world.rules.update(rules)


def run_at(world: World, **delta: float) -> list[Captured]:
    """Move the clock, run one pass of a freshly started bot, return what it sent."""
    world.clock.advance(**delta)
    world.restart()
    world.run_once()
    return world.sent()


def real_message(name: str, replace: dict[str, str]) -> bytes:
    """A real message from tests/messages with some addresses swapped (every occurrence, byte for byte)."""
    raw = (MESSAGES / name).read_bytes()
    for old, new in replace.items():
        assert old.encode() in raw, f"{old} not in {name}"
        raw = raw.replace(old.encode(), new.encode())
    return raw


def approvers(world: World) -> dict[str, str]:
    return {a["email"]: a["state"] for a in request(world)["approvers"]}


# --- reminders -----------------------------------------------------------------------------------


def test_an_approver_who_does_not_answer_is_reminded_twice_with_a_fresh_reply_address(world: World) -> None:
    escalating(world, escalation={"after": "30d"}, requests={"expire_after": "60d"})
    opened = open_request(world)
    assert sorted(opened.approvals) == [NL_ADMIN]
    first_token = opened.token_address(NL_ADMIN)

    assert run_at(world, days=3, minutes=-1) == []  # not yet due
    sent = run_at(world, minutes=2)
    assert summary(sent) == [(NL_ADMIN, REMINDER)]
    reminder = one(sent, NL_ADMIN)
    assert "this is reminder 1" in flat(reminder)
    assert "We wrote to you on 2026-11-26 09:00 UTC" in flat(reminder)
    second_token = str(reminder.message["Reply-To"])
    assert second_token != first_token and second_token.startswith("join+")
    assert run_at(world, hours=1) == []  # once, not at every pass

    sent = run_at(world, days=3)
    assert summary(sent) == [(NL_ADMIN, REMINDER)]
    assert "this is reminder 2" in flat(one(sent, NL_ADMIN))
    assert run_at(world, days=3) == [] and run_at(world, days=3) == []  # reminders.max = 2
    assert request(world)["approvers"][0]["reminders_sent"] == 2

    # The first approval request's reply address still decides (the reminder did not cancel it).
    world.deliver(reply_to(opened.approvals[NL_ADMIN], f"Roelof Meijer <{NL_ADMIN}>", "APPROVE"))
    sent = run_at(world, minutes=5)
    assert COMMAND_ADDRESS in by_rcpt(sent)
    assert request(world)["state"] == "approved"
    assert run_at(world, days=3) == []  # nobody is reminded of a decided request


def test_every_asked_approver_is_reminded_and_an_answer_ends_the_reminders(world: World) -> None:
    world.rules["digest"] = {"enabled": False}
    open_request(world)  # both roles asked at once (default)
    sent = run_at(world, days=3, minutes=1)
    assert summary(sent) == [(NL_ADMIN, REMINDER), (NL_TECH, REMINDER)]
    world.deliver(reply_to(one(sent, NL_TECH), f"Marc Groeneweg <{NL_TECH}>", "APPROVE"))
    sent = run_at(world, minutes=5)
    assert request(world)["decided_by"] == NL_TECH  # the reminder's address decided
    assert "Decided: jan@registry.example for .nl [#1]" in [subject(m) for m in by_rcpt(sent)[NL_ADMIN]]
    assert run_at(world, days=3) == []


def test_a_reminder_due_while_the_bot_was_down_is_sent_once_at_start_and_never_again(world: World) -> None:
    escalating(world, escalation={"after": "30d"}, requests={"expire_after": "60d"})
    open_request(world)
    world.restart()  # the bot goes down ...
    world.clock.advance(days=5, hours=23)  # ... for almost six days: one reminder
    # fell due (3d), the next is at 6d
    world.restart()
    world.run_once()
    world.run_once()  # the same process passes again
    world.restart()
    world.run_once()  # and another restart
    sent = world.sent()
    assert summary(sent) == [(NL_ADMIN, REMINDER)]
    assert "this is reminder 1" in flat(sent[0])
    assert audit_actions(world).count("approver-reminded") == 1
    # The next reminder counts from when the late one went out, not from when it should have.
    assert request(world)["approvers"][0]["next_reminder_at"] == "2026-12-05T08:00:00Z"


def test_a_downtime_longer_than_several_reminder_periods_still_sends_one_reminder(world: World) -> None:
    escalating(world, escalation={"after": "30d"}, requests={"expire_after": "60d"})
    open_request(world)
    sent = run_at(world, days=10)  # reminders were due at 3d, 6d and 9d
    assert summary(sent) == [(NL_ADMIN, REMINDER)]
    assert run_at(world, minutes=1) == []


# --- escalation ----------------------------------------------------------------------------------


def test_silence_escalates_administrative_then_technical_then_the_secretariat(world: World) -> None:
    escalating(world, reminders={"max": 0}, requests={"expire_after": "30d"})
    opened = open_request(world)
    assert sorted(opened.approvals) == [NL_ADMIN]

    assert run_at(world, days=7, minutes=-1) == []
    sent = run_at(world, minutes=2)  # a week of silence: technical is asked
    assert summary(sent) == [(NL_TECH, APPROVAL)]
    tech_approval = one(sent, NL_TECH)
    assert "technical contact of .nl" in flat(tech_approval)
    assert approvers(world) == {NL_ADMIN: "asked", NL_TECH: "asked"}  # the administrative one may still answer

    assert run_at(world, days=6) == []
    sent = run_at(world, days=1, minutes=1)  # another week: nobody left, tell them
    assert summary(sent) == [(SECRETARIAT, SECRETARIAT_ALERT)]
    alert = flat(one(sent, SECRETARIAT))
    assert f"{NL_ADMIN} (administrative): asked" in alert and f"{NL_TECH} (technical): asked" in alert
    assert "secirbot approve 1" in alert
    assert run_at(world, days=7) == []  # the Secretariat is told once
    assert [t["details"]["stage"] for t in request(world)["timeline"] if t["action"] == "escalated"] == [1, 2]

    # The technical contact's answer still decides.
    world.deliver(reply_to(tech_approval, f"Marc Groeneweg <{NL_TECH}>", "APPROVE"))
    sent = run_at(world, minutes=5)
    assert COMMAND_ADDRESS in by_rcpt(sent) and request(world)["decided_by"] == NL_TECH


BOUNCES = {
    # real bounce -> its failed recipient, rewritten to the approver's address (the whois record stays real)
    "bounce-postfix-dsn.eml": "kijitora@example.org",
    "bounce-exim-text.eml": "kijitora@example.ed.jp",
    "bounce-qmail-failure-notice.eml": "kijitora@example.ne.jp",
}


@pytest.mark.parametrize("sample", list(BOUNCES))
def test_a_real_bounce_of_the_approval_request_escalates_at_once(world: World, sample: str) -> None:
    escalating(world)
    open_request(world)
    world.deliver(real_message(sample, {BOUNCES[sample]: NL_ADMIN}))
    sent = run_at(world, minutes=10)
    assert summary(sent) == [(NL_TECH, APPROVAL)]  # no answer to the mailer daemon
    assert approvers(world) == {NL_ADMIN: "bounced", NL_TECH: "asked"}
    assert "approver-bounced" in audit_actions(world)
    assert world.mailbox.uids("INBOX") == [] and len(world.mailbox.uids("Processed")) == 2

    # The technical address bounces as well: nobody is left, the Secretariat is alerted.
    world.deliver(real_message(sample, {BOUNCES[sample]: NL_TECH}))
    sent = run_at(world, minutes=10)
    assert summary(sent) == [(SECRETARIAT, SECRETARIAT_ALERT)]
    assert f"{NL_ADMIN} (administrative): bounced" in flat(one(sent, SECRETARIAT))
    assert request(world)["state"] == "pending"  # a bounce decides nothing


AUTO_REPLIES = {
    # real out-of-office reply -> its sender and recipient, rewritten to the approver and the bot
    "autoreply-rfc3834-auto-submitted-away.eml": {"kijitora@example.net": NL_ADMIN, "neko@libsisimai.org": BOT},
    "autoreply-exchange-automatic-reply-no-auto-submitted.eml": {
        "nekonyaan@example.org": NL_ADMIN,
        "kijitora@example.com": BOT,
    },
}


@pytest.mark.parametrize("sample", list(AUTO_REPLIES))
def test_a_real_out_of_office_reply_escalates_at_once(world: World, sample: str) -> None:
    escalating(world)
    opened = open_request(world)
    world.deliver(real_message(sample, AUTO_REPLIES[sample]))
    sent = run_at(world, minutes=10)
    assert summary(sent) == [(NL_TECH, APPROVAL)]  # the auto-reply itself gets no answer
    assert approvers(world) == {NL_ADMIN: "away", NL_TECH: "asked"}
    # Away is not gone: back from holiday, the administrative contact can still decide.
    world.deliver(reply_to(opened.approvals[NL_ADMIN], f"Roelof Meijer <{NL_ADMIN}>", "APPROVE"))
    sent = run_at(world, days=3)
    assert request(world)["decided_by"] == NL_ADMIN
    assert COMMAND_ADDRESS in by_rcpt(sent)


def test_an_approval_request_refused_by_the_smtp_server_escalates_and_tells_the_secretariat(world: World) -> None:
    escalating(world)
    world.sink.reject_recipient(NL_ADMIN, "550 5.1.1 <admin@sidn.nl>: Recipient address rejected: User unknown")
    world.request()
    world.run_once()
    sent = world.sent()
    assert NL_ADMIN not in by_rcpt(sent)
    # The undeliverable request is noticed at once: technical is asked, the Secretariat told why.
    sent += run_at(world, minutes=1)
    got = by_rcpt(sent)
    assert [subject(m) for m in got[NL_TECH]] == [APPROVAL]
    assert f"Undeliverable: approval-request to {NL_ADMIN} [#1]" in [subject(m) for m in got[SECRETARIAT]]
    assert approvers(world) == {NL_ADMIN: "bounced", NL_TECH: "asked"}


# --- outbox retries --------------------------------------------------------------------------------


def test_a_deferred_mail_is_retried_with_backoff_on_the_clock(world: World) -> None:
    world.rules["digest"] = {"enabled": False}
    world.sink.fail_next(2)  # 451 twice
    world.request()
    world.run_once()
    assert world.sink.attempts == 4  # four mails tried, two got 451
    delivered = [r for m in world.sent() for r in m.rcpt_tos]
    assert len(delivered) == 2
    assert world.bot().outbox.pending_count() == 2
    assert run_at(world, seconds=30) == []  # retry_first is 1m
    sent = run_at(world, minutes=1)
    assert len(sent) == 2  # both delivered on the retry
    assert sorted(delivered + [m.rcpt_tos[0] for m in sent]) == sorted([NL_ADMIN, NL_TECH, SECRETARIAT, REQUESTER])
    assert run_at(world, hours=1) == []  # and only once


def test_a_mail_deferred_for_three_days_is_given_up_escalated_and_reported(world: World) -> None:
    escalating(world, reminders={"max": 0})
    world.sink.reject_recipient(NL_ADMIN, "451 4.2.1 <admin@sidn.nl>: mailbox temporarily unavailable")
    world.request()
    world.run_once()
    assert NL_ADMIN not in by_rcpt(world.sent())
    for _ in range(4):  # retried with backoff, still 4xx
        assert run_at(world, hours=1) == []
    store = world.bot().store
    row = store.one("SELECT state, attempts FROM outbox WHERE purpose = 'approval-request'")
    assert (row["state"], row["attempts"]) == ("queued", 5)
    assert run_at(world, days=3) == []  # past give_up_after (3d): given up ...
    sent = run_at(world, minutes=1)  # ... and its notices go at the next tick
    got = by_rcpt(sent)
    assert [subject(m) for m in got[SECRETARIAT]] == [f"Undeliverable: approval-request to {NL_ADMIN} [#1]"]
    assert [subject(m) for m in got[NL_TECH]] == [APPROVAL]  # the next role is asked at once
    assert approvers(world) == {NL_ADMIN: "bounced", NL_TECH: "asked"}
    assert run_at(world, hours=2) == []  # given up for good


# --- expiry --------------------------------------------------------------------------------------


def test_an_unanswered_request_expires_with_notices_and_a_late_answer_does_not_count(world: World) -> None:
    world.rules["digest"] = {"enabled": False}
    world.rules["reminders"] = {"max": 0}
    opened = open_request(world)
    # Both roles were asked at once: a week of silence leaves nobody new to ask, so the Secretariat hears.
    assert summary(run_at(world, days=7)) == [(SECRETARIAT, SECRETARIAT_ALERT)]
    assert run_at(world, days=7, minutes=-1) == []
    sent = run_at(world, minutes=2)
    assert summary(sent) == [
        (REQUESTER, "Expired: your request to join the ccTLD security list for .nl [#1]"),
        (SECRETARIAT, "Expired: request #1, jan@registry.example for .nl"),
    ]
    assert "none of the ccTLD's contacts answered in time" in flat(one(sent, REQUESTER))
    assert f"{NL_ADMIN} (administrative): closed" in flat(one(sent, SECRETARIAT))
    data = request(world)
    assert data["state"] == "expired" and data["decision"] is None
    assert {a["state"] for a in data["approvers"]} == {"closed"}
    assert run_at(world, days=1) == []  # told once

    world.deliver(reply_to(opened.approvals[NL_ADMIN], f"Roelof Meijer <{NL_ADMIN}>", "APPROVE"))
    sent = run_at(world, minutes=5)
    assert summary(sent) == [(NL_ADMIN, "Your answer could not be accepted")]
    assert COMMAND_ADDRESS not in by_rcpt(sent) and request(world)["state"] == "expired"


# --- the weekly digest ---------------------------------------------------------------------------


def _digests(sent: list[Captured]) -> list[Captured]:
    return [m for m in sent if m.rcpt_tos == [SECRETARIAT] and subject(m).startswith("Weekly digest")]


def test_the_weekly_digest_goes_to_the_secretariat_once_a_week(world: World) -> None:
    world.rules["digest"] = {"enabled": True, "day_of_week": "mon", "hour": 8}
    world.rules["reminders"] = {"max": 0}
    world.rules["escalation"] = {"after": "60d"}
    world.rules["requests"] = {"expire_after": "60d"}
    open_request(world)  # Thursday 2026-11-26 09:00
    assert _digests(run_at(world, days=3, hours=22, minutes=59)) == []  # Monday 07:59
    sent = _digests(run_at(world, minutes=2))  # Monday 08:01
    assert len(sent) == 1
    digest = sent[0]
    assert subject(digest) == "Weekly digest: 1 open request(s) for secir@lists.example.org"
    text = body(digest)
    assert "#1  jan@registry.example for .nl, pending, 3 day(s) old" in text
    assert f"{NL_ADMIN} (asked, 0 reminders)" in text
    assert _digests(run_at(world, minutes=30)) == []  # not again the same Monday
    assert _digests(run_at(world, days=3)) == []
    world.restart()
    assert _digests(run_at(world, days=3, hours=23)) == []  # Sunday: not yet
    assert len(_digests(run_at(world, hours=1))) == 1  # next Monday 08:01
    # Down for three weeks: one digest at start, not three.
    assert len(_digests(run_at(world, days=21))) == 1
    assert _digests(run_at(world, hours=1)) == []


# --- IANA unreachable ----------------------------------------------------------------------------


def test_iana_unreachable_is_retried_hourly_the_secretariat_told_once_then_approvers_asked(world: World) -> None:
    world.rules["digest"] = {"enabled": False}
    world.whois.modes["nl"] = "empty"  # whois closes at once
    world.rdap.modes["nl"] = "500"  # and RDAP fails too
    world.request()
    world.run_once()
    sent = world.sent()
    assert world.approval_requests(sent) == {}  # nobody asked without a record
    assert "could not look up the contacts of .nl" in flat(one(sent, REQUESTER))
    assert subject(one(sent, SECRETARIAT)) == "New request #1: jan@registry.example for .nl"
    assert request(world)["state"] == "resolving"
    queries = world.whois.counts["nl"]

    assert run_at(world, minutes=59) == []
    assert world.whois.counts["nl"] == queries  # not due yet: IANA is not asked
    assert run_at(world, minutes=2) == []
    assert world.whois.counts["nl"] == queries + 1  # the hourly retry, still failing
    for _ in range(3):
        assert run_at(world, hours=1) == []
    sent = run_at(world, hours=20)  # a day later: the Secretariat is told
    assert summary(sent) == [(SECRETARIAT, "IANA lookup failing for .nl: request #1 is waiting")]
    assert "secirbot lookup nl" in flat(one(sent, SECRETARIAT))
    assert run_at(world, hours=1) == []  # once

    world.whois.modes.clear()  # IANA answers again
    world.rdap.modes.clear()
    sent = run_at(world, hours=1)
    assert sorted(world.approval_requests(sent)) == [NL_ADMIN, NL_TECH]
    assert subject(one(sent, SECRETARIAT)) == "New request #1: jan@registry.example for .nl"
    assert request(world)["state"] == "pending"
    assert request(world)["lookup_attempts"] == 8
