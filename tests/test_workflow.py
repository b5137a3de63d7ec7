"""workflow.judge_reply, every branch: whether a reply to a valid token decides, asks for clarity, tells the
replier it was already decided, or is refused - and which reason wins when several apply.

Pure: SenderCheck and ReadDecision values are built here, or (for the contract with the pipeline) made by
the real check_sender from real reply messages.
"""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from secirbot.authenticity import SenderCheck, check_sender
from secirbot.message import parse_mail
from secirbot.pipeline import SECURITY_RULES
from secirbot.replies import ReadDecision, Verdict
from secirbot.workflow import LIVE_APPROVER_STATES, Judgement, judge_reply

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
EXPIRES = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)
REQUESTER = "Jan@Registry.example"
APPROVER = "admin@sidn.nl"
OK = SenderCheck(ok=True, failure=None, checks={"from": "matches"})


def decision(verdict: Verdict, first_line: str | None = None) -> ReadDecision:
    line = verdict.value if first_line is None else first_line
    why = "" if verdict is not Verdict.UNCLEAR else f"the first line of your reply was '{line}'"
    return ReadDecision(verdict=verdict, reason="", first_line=line, new_text=line, why=why)


def judge(**overrides: Any) -> Judgement:
    args: dict[str, Any] = {
        "request_state": "pending",
        "approver_state": "asked",
        "approver_expires_at": EXPIRES,
        "requester": REQUESTER,
        "sender": OK,
        "mail_from": APPROVER,
        "decision": decision(Verdict.APPROVE),
        "now": NOW,
    }
    args.update(overrides)
    return judge_reply(**args)


# --- deciding ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("verdict", [Verdict.APPROVE, Verdict.DENY])
@pytest.mark.parametrize("request_state", ["pending", "resolving"])
@pytest.mark.parametrize("approver_state", LIVE_APPROVER_STATES)
def test_a_clear_answer_from_a_live_approver_decides(verdict: Verdict, request_state: str, approver_state: str) -> None:
    # bounced and away are still live: an approver back from holiday may answer.
    assert judge(decision=decision(verdict), request_state=request_state, approver_state=approver_state) == (
        Judgement("decide", "token+from+authentication", verdict)
    )


def test_an_unclear_answer_asks_for_clarity() -> None:
    assert judge(decision=decision(Verdict.UNCLEAR, "approved?")) == Judgement("clarify", "decision-unclear")


def test_one_second_before_expiry_still_decides() -> None:
    assert judge(now=EXPIRES - timedelta(seconds=1)).outcome == "decide"


# --- refusing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("now", [EXPIRES, EXPIRES + timedelta(days=3)])
def test_token_expired(now: datetime) -> None:
    assert judge(now=now) == Judgement("reject", "token-expired")


@pytest.mark.parametrize("approver_state", ["used", "closed"])
def test_token_no_longer_live(approver_state: str) -> None:
    assert judge(approver_state=approver_state) == Judgement("reject", f"token-{approver_state}")


@pytest.mark.parametrize("request_state", ["expired", "withdrawn"])
def test_request_no_longer_open(request_state: str) -> None:
    assert judge(request_state=request_state) == Judgement("reject", f"request-{request_state}")


@pytest.mark.parametrize("mail_from", ["Jan@Registry.example", "jan@registry.example", "JAN@REGISTRY.EXAMPLE"])
def test_requester_never_approves_their_own_request(mail_from: str) -> None:
    assert judge(mail_from=mail_from) == Judgement("reject", "self-approval")
    assert judge(mail_from=mail_from, decision=decision(Verdict.DENY)) == Judgement("reject", "self-approval")


def test_no_from_address_is_no_self_approval_but_the_sender_check_decides() -> None:
    assert judge(mail_from=None).outcome == "decide"  # only reachable with a sender check that passed


def test_unauthenticated_sender_is_refused_with_the_rule_that_failed() -> None:
    failed = SenderCheck(
        ok=False,
        failure="From colleague@sidn.nl is not the approver's address admin@sidn.nl",
        checks={"from": "colleague@sidn.nl is not admin@sidn.nl"},
        rule="from-mismatch",
    )
    assert judge(sender=failed) == Judgement("reject", "from-mismatch")


def test_unauthenticated_sender_without_a_rule_code_is_still_refused() -> None:
    assert judge(sender=SenderCheck(ok=False, failure=None)) == Judgement("reject", "sender-not-authenticated")
    assert "sender-not-authenticated" in SECURITY_RULES


# --- which reason wins ----------------------------------------------------------------------------------------


def test_an_unauthenticated_sender_learns_nothing_about_the_request() -> None:
    failed = SenderCheck(ok=False, failure="x", rule="dmarc-fail")
    for state in ("approved", "denied", "expired", "withdrawn"):
        assert judge(sender=failed, request_state=state) == Judgement("reject", "dmarc-fail"), state
    assert judge(sender=failed, approver_state="closed", now=EXPIRES) == Judgement("reject", "dmarc-fail")


@pytest.mark.parametrize("request_state", ["approved", "denied"])
def test_a_decided_request_is_already_decided_whatever_the_answer(request_state: str) -> None:
    already = Judgement("already-decided", "request-already-decided")
    assert judge(request_state=request_state) == already
    assert judge(request_state=request_state, approver_state="used") == already
    assert judge(request_state=request_state, approver_state="closed", now=EXPIRES + timedelta(days=1)) == already
    assert judge(request_state=request_state, decision=decision(Verdict.UNCLEAR, "?")) == already
    assert judge(request_state=request_state, mail_from=REQUESTER) == already


def test_a_closed_request_outranks_the_token_and_the_words() -> None:
    expired = judge(request_state="expired", approver_state="closed", now=EXPIRES)
    assert expired == Judgement("reject", "request-expired")
    assert judge(approver_state="closed", now=EXPIRES) == Judgement("reject", "token-closed")
    assert judge(now=EXPIRES, mail_from=REQUESTER) == Judgement("reject", "token-expired")
    assert judge(mail_from=REQUESTER, decision=decision(Verdict.UNCLEAR, "?")) == Judgement("reject", "self-approval")


# --- the contract with the pipeline: every sender failure is a security rule --------------------------------

MESSAGES = Path(__file__).parent / "messages"
OUR_ID = "mx.lists.example.org"


def real_reply(from_header: str, *authres: str) -> bytes:
    msg = email.message_from_bytes(
        (MESSAGES / "reply-gmail-web-multipart.eml").read_bytes(), policy=email.policy.default
    )
    msg.replace_header("From", from_header)
    msg.replace_header("To", "join+abcdefghijklmnopqrstuvwxyz234567@lists.example.org")
    raw = msg.as_bytes(policy=email.policy.SMTP)
    return b"".join(f"Authentication-Results: {v}\r\n".encode() for v in authres) + raw


@pytest.mark.parametrize(
    "raw, require, rule",
    [
        (real_reply("Piet <colleague@sidn.nl>"), "none", "from-mismatch"),
        (real_reply("admin@sidn.nl, evil@evil.example"), "none", "from-unreadable"),
        (real_reply(APPROVER, f"{OUR_ID}; dmarc=fail header.from=sidn.nl"), "none", "dmarc-fail"),
        (real_reply(APPROVER), "dmarc", "dmarc-required"),
        (real_reply(APPROVER), "dkim", "dkim-required"),
    ],
    ids=["from-mismatch", "from-unreadable", "dmarc-fail", "dmarc-required", "dkim-required"],
)
def test_every_sender_failure_is_refused_as_a_security_rule(raw: bytes, require: str, rule: str) -> None:
    # The pipeline tells the Secretariat of exactly the rejections in SECURITY_RULES.
    sender = check_sender(
        parse_mail(raw), expected_from=APPROVER, authserv_id=OUR_ID, require=require, dnsfunc=lambda name: b""
    )
    assert not sender.ok
    judgement = judge(sender=sender)
    assert judgement == Judgement("reject", rule)
    assert judgement.rule in SECURITY_RULES
