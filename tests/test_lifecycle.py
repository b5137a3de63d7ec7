"""lifecycle.transition, without I/O: every (state, event) pair of the table does what the request's life
says, and every pair outside it is refused, audited and changes nothing.

The IANA record is the real whois answer for .nl (tests/iana/data/whois/whois-nl.txt); config and rules are
the tests' defaults, loaded as the bot loads them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from secirbot import lifecycle as lc
from secirbot.config import Config, load_config
from secirbot.delegation import Delegation, DelegationState
from secirbot.iana.names import parse_tld
from secirbot.iana.record import IanaRecord
from secirbot.iana.resolver import Resolution
from secirbot.iana.whois import parse_whois
from secirbot.ledger import Approver, ApproverState, Request, RequestState
from secirbot.replies import Verdict
from secirbot.rules import Rules, load_rules
from secirbot.store import iso
from tests.harness import BOT, REPO, SECRETARIAT, default_rules

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
WHOIS_NL = (REPO / "tests/iana/data/whois/whois-nl.txt").read_text()


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Rules]:
    folder: Path = tmp_path_factory.mktemp("lifecycle")
    (folder / "rules.yaml").write_text(yaml.safe_dump(default_rules(), allow_unicode=True))
    (folder / "secirbot.yaml").write_text(
        f"templates: {REPO / 'templates'}\naddresses:\n  bot: {BOT}\n  secretariat: {SECRETARIAT}\n"
    )
    config = load_config(folder / "secirbot.yaml", environ={})
    return config, load_rules(config.rules)


def nl_record() -> IanaRecord:
    parsed = parse_whois(WHOIS_NL, parse_tld("nl"))
    assert not hasattr(parsed, "kind"), parsed
    return IanaRecord(parsed.tld, parsed.organisation, parsed.contacts, "whois", NOW)  # type: ignore[union-attr]


def resolution(record: IanaRecord | None, snapshot_id: int = 7) -> Resolution:
    return Resolution(
        tld=parse_tld("nl"), snapshot_id=snapshot_id, record=record, problem=None, source="whois", fetched_at=NOW,
        delegated=True,
    )  # fmt: skip


def request(state: RequestState, **changes: Any) -> Request:
    base = Request(
        id=1, cctld="nl", requester="ann@sidn.example", requester_key="ann@sidn.example", requester_name="Ann",
        claim="CSIRT", state=state, created_at=iso(NOW - timedelta(days=1)), updated_at=iso(NOW),
        expires_at=iso(NOW + timedelta(days=13)), source_message=3, snapshot_id=7, decision=None, decided_by=None,
        decided_at=None, decided_via=None, decision_reason=None, mailman_status=None, lookup_attempts=1,
        next_lookup_at=None, escalation_stage=0, next_escalation_at=None, replacing=None,
    )  # fmt: skip
    return replace(base, **changes)


def approver(approver_id: int, email: str, state: ApproverState = ApproverState.ASKED) -> Approver:
    return Approver(
        id=approver_id, request_id=1, email=email, email_key=email.lower(), roles="administrative", name="",
        state=state, asked_at=iso(NOW - timedelta(days=1)), expires_at=iso(NOW + timedelta(days=13)), used_at=None,
        reminders_sent=0, next_reminder_at=None,
    )  # fmt: skip


def delegation_waiting() -> Delegation:
    return Delegation(
        id=5, request_id=1, approver_id=11, delegate="deputy@sidn.example", verdict="APPROVE",
        state=DelegationState.WAITING, authentication={"dmarc": "pass"}, created_at=iso(NOW - timedelta(hours=49)),
        takes_effect_at=iso(NOW - timedelta(hours=1)), message_row=9,
    )  # fmt: skip


def events() -> dict[type, Any]:
    record = nl_record()
    return {
        lc.Looked: lc.Looked(resolution(record), first=True),
        lc.StepFailed: lc.StepFailed("KeyError: 'x'"),
        lc.Decide: lc.Decide(Verdict.APPROVE, "cli:sec", "cli", "", None, None, {}, "cli"),
        lc.DelegatedApprove: lc.DelegatedApprove(11, "deputy@sidn.example", {"dmarc": "pass"}, 9),
        lc.DelegatedDeny: lc.DelegatedDeny(11, "deputy@sidn.example", {"dmarc": "pass"}, "no", 9, ""),
        lc.DelegationObjected: lc.DelegationObjected(delegation_waiting(), "boss@sidn.example", 10),
        lc.DelegationDue: lc.DelegationDue(delegation_waiting()),
        lc.Withdraw: lc.Withdraw(4, {"dmarc": "pass"}),
        lc.NotMine: lc.NotMine(11, 8, "<m@x>", {"dmarc": "pass"}, "token+from+authentication"),
        lc.Unreachable: lc.Unreachable(11, ApproverState.BOUNCED, "5.1.1"),
        lc.EscalationDue: lc.EscalationDue("no decision"),
        lc.ReminderDue: lc.ReminderDue(11),
        lc.Expire: lc.Expire(),
        lc.ContactsChanged: lc.ContactsChanged(resolution(record, snapshot_id=8)),
        lc.MailmanAnswered: lc.MailmanAnswered(21, "ann@sidn.example", 201),
    }


def world(setting: tuple[Config, Rules], *approvers: Approver) -> lc.World:
    config, rules = setting
    asked = approvers or (approver(11, "old-admin@sidn.example"),)
    return lc.World(config=config, rules=rules, now=NOW, approvers=asked, record=nl_record(), snapshot={"id": 7})


def test_every_event_has_a_sample_and_the_table_names_only_known_pairs() -> None:
    assert set(events()) == set(lc.EVENTS)
    assert {event for _, event in lc.TABLE} <= set(lc.EVENTS)


@pytest.mark.parametrize("state", list(RequestState))
@pytest.mark.parametrize("event_type", lc.EVENTS, ids=lambda t: t.__name__)
def test_every_pair_is_handled_or_refused_and_audited(
    setting: tuple[Config, Rules], state: RequestState, event_type: type
) -> None:
    before = request(state, lookup_attempts=0 if state is RequestState.RESOLVING else 1)
    outcome = lc.transition(before, events()[event_type], world(setting))
    if (state, event_type) in lc.TABLE:
        assert outcome.refused is None
        assert all(a.action != "transition-refused" for a in outcome.audits)
    else:
        assert outcome.refused and state in outcome.refused
        assert outcome.state is state
        (refusal,) = outcome.effects
        assert isinstance(refusal, lc.Audit) and refusal.action == "transition-refused"
        assert refusal.details == {"state": str(state), "event": event_type.__name__, "why": outcome.refused}


def mails(outcome: lc.Outcome) -> list[tuple[str, tuple[str, ...]]]:
    return [(m.purpose, m.to) for m in outcome.mails]


def test_first_lookup_asks_the_iana_contacts_and_acknowledges(setting: tuple[Config, Rules]) -> None:
    outcome = lc.transition(
        request(RequestState.RESOLVING, lookup_attempts=0), events()[lc.Looked], world(setting, *())
    )
    record = nl_record()
    contacts = [a.email for a in record.approvers(("administrative", "technical"))]
    assert outcome.state is RequestState.PENDING
    assert [e.email for e in outcome.effects if isinstance(e, lc.AddApprover)] == [
        c for c in contacts if c != "old-admin@sidn.example"
    ]
    sent = mails(outcome)
    assert sent[-2:] == [("request-copy", ("secretariat@example.org",)), ("request-received", ("ann@sidn.example",))]
    assert all(
        m.reply_token is not None and m.reply_token.added for m in outcome.mails if m.purpose == "approval-request"
    )
    assert outcome.mails[-1].reply_token == lc.ReplyToken(requester=True)


def test_a_failed_first_lookup_keeps_the_request_resolving_and_says_so(setting: tuple[Config, Rules]) -> None:
    outcome = lc.transition(
        request(RequestState.RESOLVING, lookup_attempts=0), lc.Looked(resolution(None), first=True), world(setting)
    )
    assert outcome.state is RequestState.RESOLVING
    assert [a.action for a in outcome.audits] == ["lookup-failed"]
    assert outcome.mails[-1].context["delayed"] is True


def test_approve_closes_every_token_admits_subscribes_and_tells_everyone(setting: tuple[Config, Rules]) -> None:
    asked = (approver(11, "admin@sidn.example"), approver(12, "tech@sidn.example"))
    event = lc.Decide(Verdict.APPROVE, "admin@sidn.example", "mail", "", 11, 9, {"dmarc": "pass"}, "token")
    outcome = lc.transition(request(RequestState.PENDING), event, world(setting, *asked))
    assert outcome.state is RequestState.APPROVED and outcome.decided
    kinds = [type(e).__name__ for e in outcome.effects]
    assert kinds[:4] == ["EndWaitingDelegations", "SetRequest", "SetApprover", "CloseLiveApprovers"]
    assert "Admit" in kinds and "Subscribe" in kinds
    assert mails(outcome) == [
        ("decision-requester", ("ann@sidn.example",)),
        ("decision-secretariat", ("secretariat@example.org",)),
        ("decision-recorded", ("admin@sidn.example",)),
        ("decision-approvers", ("tech@sidn.example",)),
    ]


def test_deny_admits_nobody(setting: tuple[Config, Rules]) -> None:
    event = lc.Decide(Verdict.DENY, "admin@sidn.example", "mail", "unknown", 11, 9, {}, "token")
    outcome = lc.transition(request(RequestState.PENDING), event, world(setting, approver(11, "admin@sidn.example")))
    assert outcome.state is RequestState.DENIED
    assert not [e for e in outcome.effects if isinstance(e, lc.Admit | lc.Subscribe)]


def test_not_mine_of_the_last_live_contact_escalates(setting: tuple[Config, Rules]) -> None:
    outcome = lc.transition(request(RequestState.PENDING), events()[lc.NotMine], world(setting))
    assert outcome.state is RequestState.PENDING and outcome.escalated
    assert [a.action for a in outcome.audits][:1] == ["approver-not-mine"]


def test_a_delegation_due_on_a_closed_request_only_supersedes_it(setting: tuple[Config, Rules]) -> None:
    outcome = lc.transition(request(RequestState.DENIED), events()[lc.DelegationDue], world(setting))
    assert outcome.effects == (lc.EndDelegation(5, DelegationState.SUPERSEDED, "bot"),)
    assert not outcome.decided


def test_expire_and_withdraw_close_the_live_contacts(setting: tuple[Config, Rules]) -> None:
    for event, state in ((lc.Expire(), RequestState.EXPIRED), (events()[lc.Withdraw], RequestState.WITHDRAWN)):
        outcome = lc.transition(request(RequestState.PENDING), event, world(setting))
        assert outcome.state is state
        assert any(isinstance(e, lc.CloseLiveApprovers) for e in outcome.effects)
        assert ("secretariat@example.org",) in [m.to for m in outcome.mails]


@pytest.mark.parametrize(
    ("http", "status", "action"),
    [(201, "member", "mailman-member"), (202, "pending", "mailman-pending"), (400, "failed", "mailman-failed")],
)
def test_mailman_s_answer_sets_the_mailman_status_only(
    setting: tuple[Config, Rules], http: int, status: str, action: str
) -> None:
    outcome = lc.transition(
        request(RequestState.APPROVED), lc.MailmanAnswered(21, "ann@sidn.example", http, said="{}"), world(setting)
    )
    assert outcome.state is RequestState.APPROVED
    assert outcome.effects == (
        lc.SetRequest({"mailman_status": status}),
        lc.Audit(action, {"outbox_id": 21, "http": http}),
    )


def test_mailman_never_reached_records_the_failure_with_its_error(setting: tuple[Config, Rules]) -> None:
    answered = lc.MailmanAnswered(21, "ann@sidn.example", None, error="Mailman REST POST x: ConnectionError")
    outcome = lc.transition(request(RequestState.APPROVED), answered, world(setting))
    assert outcome.effects == (
        lc.SetRequest({"mailman_status": "failed"}),
        lc.Audit("mailman-failed", {"outbox_id": 21, "error": "Mailman REST POST x: ConnectionError"}),
    )


def test_a_mailman_conflict_tells_the_secretariat_what_mailman_said(setting: tuple[Config, Rules]) -> None:
    said = "{'title': 'Member already subscribed'}"
    outcome = lc.transition(
        request(RequestState.APPROVED), lc.MailmanAnswered(21, "ann@sidn.example", 409, said=said), world(setting)
    )
    assert outcome.effects[:2] == (
        lc.SetRequest({"mailman_status": "conflict"}),
        lc.Audit("mailman-conflict", {"outbox_id": 21, "http": 409, "said": said}),
    )
    assert mails(outcome) == [("mailman-conflict", (SECRETARIAT,))]
    assert outcome.mails[0].context["said"] == said and outcome.mails[0].context["address"] == "ann@sidn.example"


def test_transition_is_pure_the_same_input_gives_the_same_outcome(setting: tuple[Config, Rules]) -> None:
    for event in events().values():
        first = lc.transition(request(RequestState.PENDING), event, world(setting))
        again = lc.transition(request(RequestState.PENDING), event, world(setting))
        assert first == again
