"""NOT MINE (alias ABSTAIN): an approver says the request is not theirs to judge.

End to end on the real Dovecot, the SMTP sink and the local IANA servers: the answer is recorded on the
contact's row and thanked for, decides nothing, and the other contacts can still decide; when every contact
asked has answered it, the request escalates at once (next roles, then the Secretariat). It is read as
strictly as APPROVE and DENY, and authenticated the same way: a forged NOT MINE counts for nothing.
"""

from __future__ import annotations

import email
import email.policy
import logging
import os
from datetime import UTC, datetime, timedelta

import pytest

from secirbot.authenticity import SenderCheck
from secirbot.cli import main
from secirbot.replies import ReadDecision, Verdict
from secirbot.workflow import Judgement, judge_reply
from tests.clients import client_reply
from tests.flow import (
    ADMIN_FROM,
    COMMAND_ADDRESS,
    NL_ADMIN,
    NL_TECH,
    REQUESTER,
    TECH_FROM,
    assert_undecided,
    audit_actions,
    by_rcpt,
    flat,
    one,
    open_request,
    request,
    summary,
)
from tests.harness import SECRETARIAT, World

RECORDED = "Recorded: your NOT MINE for jan@registry.example (.nl) [#1]"
APPROVAL = "Approval needed: jan@registry.example asks to join the ccTLD security list for .nl [#1]"
REMINDER = "Reminder: " + APPROVAL
ALERT = "No answer from the contacts of .nl: request #1"
CLARIFY = "Please answer APPROVE or DENY: jan@registry.example for .nl [#1]"
ALREADY = "Already decided: jan@registry.example for .nl [#1]"
NOT_ACCEPTED = "Your answer could not be accepted"
REJECTED = "Rejected answer to request #1 (.nl): from-mismatch"


def approvers(world: World) -> dict[str, str]:
    return {a["email"]: a["state"] for a in request(world)["approvers"]}


def run_at(world: World, **delta: float) -> list:
    """Move the clock, run one pass of a freshly started bot, return what it sent."""
    world.clock.advance(**delta)
    world.restart()
    world.run_once()
    return world.sent()


def administrative_first(world: World) -> None:
    """Administrative contacts are asked first, technical ones only on escalation (as in test_schedules)."""
    world.rules["approvers"] = {"roles": ["administrative", "technical"], "ask_first": ["administrative"]}
    world.rules["digest"] = {"enabled": False}


# --- one contact says NOT MINE, another decides ------------------------------------------------------------


@pytest.mark.parametrize(
    "client, words",
    [("gmail", "NOT MINE"), ("outlook", "Not mine.\n\nI only run the name servers."), ("apple-mail", "ABSTAIN")],
)
def test_not_mine_by_one_contact_is_recorded_and_the_other_still_decides(world: World, client: str, words: str) -> None:
    opened = open_request(world)
    assert sorted(opened.approvals) == [NL_ADMIN, NL_TECH]
    assert "NOT MINE if this request is not yours to judge" in flat(opened.approvals[NL_ADMIN])
    reply = client_reply(client, opened.approvals[NL_ADMIN].message, ADMIN_FROM, words)
    world.deliver(reply)
    world.run_once()
    sent = world.sent()

    # Only the contact hears back, in the thread of their answer; nobody is told of a decision.
    assert summary(sent) == [(NL_ADMIN, RECORDED)]
    thanks = one(sent, NL_ADMIN)
    sent_id = email.message_from_bytes(reply, policy=email.policy.default)["Message-ID"]
    assert thanks.message["In-Reply-To"] == sent_id
    assert thanks.message["Reply-To"] is None  # nothing more to answer with this token
    text = flat(thanks)
    assert "Your answer NOT MINE about jan@registry.example" in text
    assert "is recorded (2026-11-26 09:00 UTC): you do not decide this request." in text
    assert "The other contacts asked, or the Secretariat, can still decide it." in text
    assert_undecided(world, sent)
    assert approvers(world) == {NL_ADMIN: "not-mine", NL_TECH: "asked"}
    recorded = [t for t in request(world)["timeline"] if t["action"] == "approver-not-mine"]
    assert len(recorded) == 1
    assert recorded[0]["actor"] == NL_ADMIN
    assert recorded[0]["details"]["approver"] == NL_ADMIN and recorded[0]["details"]["left"] == [NL_TECH]
    assert recorded[0]["details"]["rule"] == "token+from+authentication"
    assert "escalated" not in audit_actions(world)

    # Three days on, the reminder goes to the contact who has not answered, not to the one who has.
    sent = run_at(world, days=3, minutes=1)
    assert summary(sent) == [(NL_TECH, REMINDER)]

    world.deliver(client_reply("gmail", opened.approvals[NL_TECH].message, TECH_FROM, "APPROVE"))
    sent = run_at(world, hours=1)
    assert summary(sent) == sorted(
        [
            (COMMAND_ADDRESS, ""),
            (REQUESTER, "Approved: your request to join the ccTLD security list for .nl [#1]"),
            (SECRETARIAT, "APPROVE: jan@registry.example for .nl [#1]"),
            (NL_TECH, "Recorded: your APPROVE for jan@registry.example (.nl) [#1]"),
        ]
    )
    data = request(world)
    assert (data["state"], data["decided_by"]) == ("approved", NL_TECH)
    assert approvers(world) == {NL_ADMIN: "not-mine", NL_TECH: "used"}


def test_a_contact_who_said_not_mine_cannot_decide_afterwards(world: World) -> None:
    opened = open_request(world)
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "NOT MINE"))
    world.run_once()
    world.sent()
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"))
    sent = run_at(world, minutes=5)
    assert summary(sent) == [(NL_ADMIN, NOT_ACCEPTED)]
    assert "the request it answers is no longer open for your answer" in flat(one(sent, NL_ADMIN))
    assert_undecided(world, sent)
    rejected = [t["details"]["rule"] for t in request(world)["timeline"] if t["action"] == "reply-rejected"]
    assert rejected == ["token-not-mine"]


# --- every contact asked says NOT MINE: escalate at once ---------------------------------------------------


def test_not_mine_by_every_contact_asked_escalates_to_the_next_role_then_the_secretariat(world: World) -> None:
    administrative_first(world)
    opened = open_request(world)
    assert sorted(opened.approvals) == [NL_ADMIN]

    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "NOT MINE"))
    sent = run_at(world, hours=1)  # long before the week of silence that escalates otherwise
    assert summary(sent) == sorted([(NL_ADMIN, RECORDED), (NL_TECH, APPROVAL)])
    tech_approval = one(sent, NL_TECH)
    assert "technical contact of .nl" in flat(tech_approval)
    assert approvers(world) == {NL_ADMIN: "not-mine", NL_TECH: "asked"}
    escalated = [t["details"] for t in request(world)["timeline"] if t["action"] == "escalated"]
    assert [(e["stage"], e["asked"]) for e in escalated] == [(1, [NL_TECH])]
    assert escalated[0]["why"] == f"every contact asked answered NOT MINE ({NL_ADMIN})"

    # The contact asked at the next stage answers the same: nobody is left, the Secretariat is told.
    world.deliver(client_reply("outlook", tech_approval.message, TECH_FROM, "not-mine"))
    sent = run_at(world, hours=1)
    assert summary(sent) == sorted([(NL_TECH, RECORDED), (SECRETARIAT, ALERT)])
    alert = flat(one(sent, SECRETARIAT))
    assert f"Why now: every contact asked answered NOT MINE ({NL_ADMIN}, {NL_TECH})" in alert
    assert f"{NL_ADMIN} (administrative): not-mine" in alert and f"{NL_TECH} (technical): not-mine" in alert
    assert "secirbot approve 1" in alert
    assert_undecided(world, sent)
    assert [t["details"]["stage"] for t in request(world)["timeline"] if t["action"] == "escalated"] == [1, 2]

    # Told once: no reminders to contacts who answered, no second alert on the weekly escalation.
    assert run_at(world, days=8) == []


def test_not_mine_by_both_contacts_asked_first_alerts_the_secretariat_at_once(world: World) -> None:
    opened = open_request(world)
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "NOT MINE"))
    assert summary(run_at(world, minutes=5)) == [(NL_ADMIN, RECORDED)]
    world.deliver(client_reply("apple-mail", opened.approvals[NL_TECH].message, TECH_FROM, "Abstain"))
    sent = run_at(world, minutes=5)
    assert summary(sent) == sorted([(NL_TECH, RECORDED), (SECRETARIAT, ALERT)])  # no role left to ask
    assert approvers(world) == {NL_ADMIN: "not-mine", NL_TECH: "not-mine"}
    assert request(world)["state"] == "pending"  # the Secretariat decides


# --- what does not count -----------------------------------------------------------------------------------


def test_a_forged_not_mine_counts_for_nothing(world: World) -> None:
    opened = open_request(world)
    # Not of sidn.nl: a colleague there would be judged as a delegate (tests/test_delegation.py).
    colleague = "Piet Colleague <colleague@partner.example>"
    for approver in (NL_ADMIN, NL_TECH):  # forged for every contact: it must not escalate either
        world.deliver(client_reply("gmail", opened.approvals[approver].message, colleague, "NOT MINE"))
    world.run_once()
    sent = world.sent()
    # The Secretariat hears of each forgery; the sender gets one refusal a day.
    assert summary(sent) == sorted(
        [("colleague@partner.example", NOT_ACCEPTED), (SECRETARIAT, REJECTED), (SECRETARIAT, REJECTED)]
    )
    refusal = flat(one(sent, "colleague@partner.example"))
    assert "an approval request can only be answered from the address it was sent to" in refusal
    assert all("An answer to the approval request sent to" in flat(m) for m in by_rcpt(sent)[SECRETARIAT])
    assert_undecided(world, sent)
    assert approvers(world) == {NL_ADMIN: "asked", NL_TECH: "asked"}
    actions = audit_actions(world)
    assert "approver-not-mine" not in actions and "escalated" not in actions
    rejected = [t["details"] for t in request(world)["timeline"] if t["action"] == "reply-rejected"]
    assert [(r["rule"], r["first_line"]) for r in rejected] == [("from-mismatch", "NOT MINE")] * 2


@pytest.mark.parametrize(
    "words, why",
    [
        ("NOT MINE APPROVE", "your reply named both APPROVE and NOT MINE"),
        ("approve? not mine", "your reply named both APPROVE and NOT MINE"),
        ("NOT MINE\n\nDENY", "your reply named both DENY and NOT MINE"),
        ("NOT APPROVE", "the first line of your reply was 'NOT APPROVE'"),
    ],
)
def test_not_mine_with_another_word_asks_for_clarification(world: World, words: str, why: str) -> None:
    opened = open_request(world)
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, words))
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [(NL_ADMIN, CLARIFY)]
    assert f"We could not read a decision from it: {why}." in flat(one(sent, NL_ADMIN))
    assert_undecided(world, sent)
    assert approvers(world) == {NL_ADMIN: "asked", NL_TECH: "asked"}
    assert "approver-not-mine" not in audit_actions(world)


def test_not_mine_after_the_decision_gets_the_already_decided_reply(world: World) -> None:
    opened = open_request(world)
    world.deliver(client_reply("gmail", opened.approvals[NL_TECH].message, TECH_FROM, "DENY\nNot our staff."))
    world.run_once()
    world.sent()
    assert request(world)["state"] == "denied"
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "NOT MINE"))
    sent = run_at(world, hours=1)
    assert summary(sent) == [(NL_ADMIN, ALREADY)]
    assert "was already decided: DENY by tech@sidn.nl on 2026-11-26 09:00 UTC" in flat(one(sent, NL_ADMIN))
    assert approvers(world) == {NL_ADMIN: "closed", NL_TECH: "used"}
    assert "approver-not-mine" not in audit_actions(world)


# --- judge_reply: NOT MINE is judged like a decision, and is none --------------------------------------------

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
OK = SenderCheck(ok=True, failure=None, checks={"from": "matches"})
NOT_MINE = ReadDecision(verdict=Verdict.NOT_MINE, reason="", first_line="NOT MINE", new_text="NOT MINE", why="")


def judged(**overrides: object) -> Judgement:
    args: dict = {
        "request_state": "pending",
        "approver_state": "asked",
        "approver_expires_at": NOW + timedelta(days=5),
        "requester": REQUESTER,
        "sender": OK,
        "mail_from": NL_ADMIN,
        "decision": NOT_MINE,
        "now": NOW,
    }
    args.update(overrides)
    return judge_reply(**args)


@pytest.mark.parametrize("approver_state", ["asked", "bounced", "away"])
def test_judge_reply_not_mine_from_a_live_contact(approver_state: str) -> None:
    assert judged(approver_state=approver_state) == Judgement("not-mine", "token+from+authentication", Verdict.NOT_MINE)


def test_judge_reply_not_mine_is_refused_or_answered_like_a_decision() -> None:
    forged = SenderCheck(ok=False, failure="From is not the approver", checks={}, rule="from-mismatch")
    assert judged(sender=forged) == Judgement("reject", "from-mismatch")
    assert judged(request_state="approved") == Judgement("already-decided", "request-already-decided")
    assert judged(approver_state="not-mine") == Judgement("reject", "token-not-mine")
    assert judged(now=NOW + timedelta(days=5)) == Judgement("reject", "token-expired")
    assert judged(mail_from=REQUESTER) == Judgement("reject", "self-approval")


# --- what the Secretariat sees, and decides ----------------------------------------------------------------


def test_the_secretariat_sees_not_mine_in_show_and_decides(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER", "alice")
    for name in [n for n in os.environ if n.startswith("SECIRBOT_")]:
        monkeypatch.delenv(name)
    root = logging.getLogger()  # the CLI configures logging; later tests get it back as it was
    monkeypatch.setattr(root, "handlers", root.handlers[:])
    monkeypatch.setattr(root, "level", root.level)
    opened = open_request(world)
    for approver, sender in ((NL_ADMIN, ADMIN_FROM), (NL_TECH, TECH_FROM)):
        world.deliver(client_reply("gmail", opened.approvals[approver].message, sender, "NOT MINE"))
    world.run_once()
    assert (SECRETARIAT, ALERT) in summary(world.sent())

    world.write_config()
    capsys.readouterr()
    assert main(["--config", str(world.config_file), "show", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    shown = [ln.split()[:3] for ln in lines if ln.startswith("    ") and "reminders:" in ln]
    assert shown == [[NL_ADMIN, "administrative", "not-mine"], [NL_TECH, "technical", "not-mine"]]
    timeline = "\n".join(lines[lines.index("  timeline:") + 1 :])
    assert timeline.count("approver answered NOT MINE (no decision)") == 2

    assert main(["--config", str(world.config_file), "approve", "1"]) == 0
    sent = world.sent()
    assert summary(sent) == sorted(
        [
            (COMMAND_ADDRESS, ""),
            (REQUESTER, "Approved: your request to join the ccTLD security list for .nl [#1]"),
            (SECRETARIAT, "APPROVE: jan@registry.example for .nl [#1]"),
        ]
    )  # the contacts who said it was not theirs are not asked or told again
    assert (request(world)["state"], request(world)["decided_via"]) == ("approved", "cli")
