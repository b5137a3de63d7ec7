"""Where a request's state machine (lifecycle.py) meets the store: gather what a transition reads, run it,
write its Outcome.

`run(bot, request, event)` gathers the World (the request's approvers, its kept IANA answer, the few facts an
event needs), calls the pure `lifecycle.transition` and applies the Outcome's effects in order, in the
caller's transaction: the ledger's rows, the audit records, the roster and Mailman actions, and the mail,
composed into the outbox (sent after the commit). The named functions below are the events as the pipeline,
the scheduler and the CLI raise them.

`judge_reply` is pure: whether an approver's reply decides, needs a clarification, or is refused.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from . import delegation, lifecycle, mailman, membership, roster, tokens
from .authenticity import SenderCheck
from .config import Config
from .iana.names import parse_tld
from .iana.resolver import Resolution, load_snapshot
from .ledger import DECIDED_STATES, LIVE_APPROVER_STATES, OPEN_STATES, Approver, ApproverState, Request, RequestState
from .lifecycle import context_for, when
from .message import address_key, same_address
from .replies import ReadDecision, Verdict
from .rules import Rules
from .store import StoreError, from_iso, iso

if TYPE_CHECKING:
    from .bot import Bot
    from .intake import Claim
    from .outbox import DeliveryEvent

__all__ = [
    "DECIDED_STATES",
    "LIVE_APPROVER_STATES",
    "OPEN_STATES",
    "Config",
    "Rules",
    "context_for",
    "from_iso",
    "when",
]


# --- judging a reply (pure) ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    outcome: Literal["decide", "not-mine", "clarify", "already-decided", "reject"]
    rule: str  # the rule that fired, for the audit and the reply
    verdict: Verdict | None = None


def judge_reply(
    *,
    request_state: str,
    approver_state: str,
    approver_expires_at: datetime,
    requester: str,
    sender: SenderCheck,
    mail_from: str | None,
    decision: ReadDecision,
    now: datetime,
    request_id: int | None = None,
    thread_request_id: int | None = None,
) -> Judgement:
    """Whether a reply to a valid token decides the request. Every check must pass; order matters only
    for which reason is given, and no reply from an unauthenticated sender learns the request's state.

    `thread_request_id` is the request whose mail the reply answers by its threading headers, if any: a
    reply in one request's thread that carries another request's token is not taken as a decision of
    either (the approver is asked which one they meant)."""
    if not sender.ok:
        return Judgement("reject", sender.rule or "sender-not-authenticated")
    if request_state in DECIDED_STATES:
        return Judgement("already-decided", "request-already-decided")
    if request_state not in OPEN_STATES:
        return Judgement("reject", f"request-{request_state}")
    if approver_state not in LIVE_APPROVER_STATES:
        return Judgement("reject", f"token-{approver_state}")
    if now >= approver_expires_at:
        return Judgement("reject", "token-expired")
    if mail_from and same_address(mail_from, requester):
        return Judgement("reject", "self-approval")
    if thread_request_id is not None and thread_request_id != request_id:
        return Judgement("clarify", "thread-mismatch")
    if decision.verdict is Verdict.UNCLEAR:
        return Judgement("clarify", "decision-unclear")
    if decision.verdict is Verdict.NOT_MINE:  # as authenticated as a decision, but none
        return Judgement("not-mine", "token+from+authentication", decision.verdict)
    return Judgement("decide", "token+from+authentication", decision.verdict)


# --- running the machine ---------------------------------------------------------------------------------

# What each event reads besides the approvers: the kept IANA answer, the snapshot summary, other facts.
_NEEDS_RECORD = (lifecycle.NotMine, lifecycle.Unreachable, lifecycle.EscalationDue, lifecycle.ReminderDue)
_DECIDING = (lifecycle.Decide, lifecycle.DelegatedDeny, lifecycle.DelegationDue)


def world(bot: Bot, request: Request, event: lifecycle.Event) -> lifecycle.World:
    """The facts `lifecycle.transition` reads for this event, read once."""
    store = bot.store
    facts: dict[str, Any] = {}
    if isinstance(event, _NEEDS_RECORD) and request.snapshot_id:
        facts["record"] = load_snapshot(store, request.snapshot_id)
    if isinstance(event, _DECIDING):
        facts["snapshot"] = snapshot_summary(bot, request.snapshot_id)
        if request.replacing:
            facts["replaced"] = roster.on_list(store, request.replacing)
    if isinstance(event, lifecycle.Looked):
        if event.first:
            source = store.one("SELECT message_id FROM messages WHERE id = ?", (request.source_message,))
            facts["source_message_id"] = source["message_id"] if source else None
        elif event.resolution.record is None:
            facts["lookup_alerted"] = (
                store.one("SELECT 1 FROM audit WHERE request_id = ? AND action = 'lookup-alert'", (request.id,))
                is not None
            )
    if isinstance(event, lifecycle.StepFailed):
        facts["stuck_reported"] = (
            store.one("SELECT 1 FROM outbox WHERE request_id = ? AND purpose = 'request-stuck'", (request.id,))
            is not None
        )
    return lifecycle.World(
        config=bot.config,
        rules=bot.rules,
        now=bot.now(),
        approvers=tuple(bot.ledger.approvers(request.id)),
        **facts,
    )


def run(bot: Bot, request: Request, event: lifecycle.Event) -> lifecycle.Outcome:
    """Feed one event to the request's state machine and write what it decides (in the caller's transaction)."""
    outcome = lifecycle.transition(request, event, world(bot, request, event))
    apply(bot, request, outcome)
    return outcome


def apply(bot: Bot, request: Request, outcome: lifecycle.Outcome) -> Request:
    """Write an Outcome's effects in order; returns the request as it now stands."""
    ledger, store, now = bot.ledger, bot.store, bot.now()
    added: dict[int, int] = {}  # AddApprover key -> the new row's id
    current = request
    for effect in outcome.effects:
        if isinstance(effect, lifecycle.SetRequest):
            ledger.update(request.id, effect.changes, now=now)
            current = replace(current, **effect.changes, updated_at=iso(now))
        elif isinstance(effect, lifecycle.SetApprover):
            ledger.update_approver(effect.approver_id, effect.changes)
        elif isinstance(effect, lifecycle.CloseLiveApprovers):
            ledger.close_live_approvers(request.id)
        elif isinstance(effect, lifecycle.AddApprover):
            added[effect.key] = ledger.add_approver(
                request.id,
                email=effect.email,
                roles=effect.roles,
                name=effect.name,
                asked_at=now,
                expires_at=current.expires_at,
                next_reminder_at=effect.next_reminder_at,
            )
        elif isinstance(effect, lifecycle.Audit):
            store.audit(
                effect.action,
                at=now,
                actor=effect.actor,
                request_id=request.id,
                message_row=effect.message_row,
                **effect.details,
            )
        elif isinstance(effect, lifecycle.Mail):
            _queue(bot, current, effect, added, now)
        elif isinstance(effect, lifecycle.Admit):
            roster.admit(store, current.as_dict(), now=now, actor=effect.actor)
        elif isinstance(effect, lifecycle.Subscribe):
            mailman.queue_subscribe(bot, current.as_dict())
        elif isinstance(effect, lifecycle.RemoveMember):
            membership.remove(
                bot,
                effect.member,
                actor=effect.actor,
                reason=effect.reason,
                asked_by=effect.asked_by,
                cause_message=effect.cause_message,
            )
        elif isinstance(effect, lifecycle.RecordDelegation):
            delegation.record(
                store,
                request_id=request.id,
                approver_id=effect.approver_id,
                delegate=effect.delegate,
                verdict=effect.verdict,
                state=effect.state,
                checks=dict(effect.checks),
                now=now,
                takes_effect_at=effect.takes_effect_at,
                message_row=effect.message_row,
            )
        elif isinstance(effect, lifecycle.EndDelegation):
            delegation.end(store, effect.delegation_id, effect.state, now=now, by=effect.by)
        else:
            delegation.end_all_waiting(store, request.id, effect.state, now=now, by=effect.by)
    return current


def _queue(bot: Bot, request: Request, mail: lifecycle.Mail, added: Mapping[int, int], now: datetime) -> None:
    reply_to = None
    if mail.reply_token is not None:
        # Each mail gets its own token (any of an approver's answers); only its digest is stored.
        token = tokens.mint()
        wanted = mail.reply_token
        if wanted.requester:
            bot.ledger.add_requester_token(tokens.digest(token), request.id, now)
        else:
            approver_id = wanted.approver_id if wanted.added is None else added[wanted.added]
            assert approver_id is not None
            bot.ledger.add_token(tokens.digest(token), approver_id, now)
        reply_to = tokens.reply_address(bot.bot_address, token)
    try:
        bot.outbox.queue_mail(
            purpose=mail.purpose,
            template=mail.template,
            context=mail.context,
            to=list(mail.to),
            reply_to=reply_to,
            in_reply_to=mail.in_reply_to,
            request_id=request.id,
            cause_message=mail.cause_message,
            auto=mail.auto,
            language=mail.language,
        )
    except (sqlite3.Error, StoreError):
        raise
    except Exception as exc:
        if not mail.fallible:
            raise
        # A notice about a failing step must not fail the step: the audit keeps the reason.
        bot.store.audit("notice-not-composed", at=now, request_id=request.id, error=f"{type(exc).__name__}: {exc}")


# --- reading ----------------------------------------------------------------------------------------


def get_request(bot: Bot, request_id: int) -> Request:
    return bot.ledger.request(request_id)


def request_context(bot: Bot, request: Request) -> dict[str, Any]:
    """What every template may say about a request."""
    return context_for(bot.config, bot.rules, request)


def live_approvers(bot: Bot, request_id: int) -> list[Approver]:
    return bot.ledger.live_approvers(request_id)


def iana_contacts(bot: Bot, request: Request) -> list[str]:
    """Every IANA contact address of the request's ccTLD: those asked, and all in the IANA answer kept."""
    found = [a.email for a in bot.ledger.approvers(request.id)]
    record = load_snapshot(bot.store, request.snapshot_id) if request.snapshot_id else None
    if record is not None:
        found += [c.email for c in record.contacts]
    return found


def snapshot_summary(bot: Bot, snapshot_id: int | None) -> dict[str, Any]:
    if snapshot_id is None:
        return {"id": None, "source": "", "fetched": ""}
    row = bot.store.one("SELECT id, source, fetched_at FROM iana_snapshots WHERE id = ?", (snapshot_id,))
    if row is None:
        return {"id": snapshot_id, "source": "", "fetched": ""}
    return {"id": row["id"], "source": row["source"], "fetched": when(row["fetched_at"])}


def approver_rows(bot: Bot, request_id: int) -> list[dict[str, Any]]:
    return [a.as_dict() for a in bot.ledger.approvers(request_id)]


def audit_rows(bot: Bot, request_id: int) -> list[dict[str, Any]]:
    out = []
    for row in bot.store.all("SELECT * FROM audit WHERE request_id = ? ORDER BY id", (request_id,)):
        item = dict(row)
        item["details"] = json.loads(item["details"])
        out.append(item)
    return out


# --- the events, as the stages raise them -----------------------------------------------------------------


def open_request(bot: Bot, *, requester: str, claim: Claim, message_row: int | None, in_reply_to: str | None) -> int:
    """Create the request, waiting for its first IANA lookup (due at once; schedule.py runs it off the
    message path, and `first_lookup` then asks the approvers and acknowledges). Returns its id."""
    now = bot.now()
    request_id = bot.ledger.open(
        cctld=claim.cctld.ascii,
        requester=requester,
        requester_name=claim.name,
        claim=claim.words,
        now=now,
        expires_at=now + bot.rules.requests.expire_after,
        source_message=message_row,
        replacing=claim.replacing,
    )
    bot.store.audit(
        "request-opened",
        at=now,
        request_id=request_id,
        message_row=message_row,
        cctld=claim.cctld.ascii,
        requester=requester,
        in_reply_to=in_reply_to,
        replacing=claim.replacing,
    )
    return request_id


def first_lookup(bot: Bot, request: Request, resolution: Resolution) -> None:
    """IANA's first answer (or failure) for a new request: ask the approvers, or wait and retry; tell the
    requester which, and the Secretariat."""
    run(bot, request, lifecycle.Looked(resolution, first=True))


def retry_lookup(bot: Bot, request: Request, resolution: Resolution) -> None:
    """A scheduled retry of IANA for a request that is waiting for it."""
    run(bot, request, lifecycle.Looked(resolution, first=False))


def step_failed(bot: Bot, request: Request, reason: str) -> None:
    """The step after a lookup raised (our fault): retry it later, tell the Secretariat once. The
    request is never lost; if even the notice cannot be composed, the audit keeps the reason."""
    run(bot, request, lifecycle.StepFailed(reason))


def decide(
    bot: Bot,
    request: Request,
    verdict: Verdict,
    *,
    decided_by: str,
    via: str,
    reason: str,
    approver_id: int | None,
    message_row: int | None,
    checks: dict[str, str],
    rule: str,
    headers: str = "",
    actor: str | None = None,
) -> None:
    """Record the decision, close every token, queue the Mailman action and the notices."""
    run(
        bot,
        request,
        lifecycle.Decide(verdict, decided_by, via, reason, approver_id, message_row, checks, rule, headers, actor),
    )


def delegated_approve(
    bot: Bot, request: Request, approver: Approver, *, delegate: str, checks: dict[str, str], message_row: int
) -> None:
    """A qualifying delegate answered APPROVE: provisional until the objection window ends."""
    run(bot, request, lifecycle.DelegatedApprove(approver.id, delegate, checks, message_row))


def delegated_deny(
    bot: Bot,
    request: Request,
    approver: Approver,
    *,
    delegate: str,
    checks: dict[str, str],
    reason: str,
    message_row: int,
    headers: str,
) -> None:
    """A qualifying delegate answered DENY: it takes effect at once; the Secretariat is told who gave it."""
    run(bot, request, lifecycle.DelegatedDeny(approver.id, delegate, checks, reason, message_row, headers))


def delegation_objected(
    bot: Bot, request: Request, waiting: delegation.Delegation, *, objector: str, message_row: int | None
) -> None:
    """OBJECT in the window: the delegated APPROVE is cancelled, the request stays open, everyone is told."""
    run(bot, request, lifecycle.DelegationObjected(waiting, objector, message_row))


def delegation_due(bot: Bot, waiting: delegation.Delegation) -> bool:
    """The objection window of a delegated APPROVE ended without an OBJECT: it decides the request, if the
    request is still open. Returns whether it decided."""
    return run(bot, bot.ledger.request(waiting.request_id), lifecycle.DelegationDue(waiting)).decided


def withdraw(bot: Bot, request: Request, *, message_row: int | None, checks: dict[str, str]) -> None:
    """The requester withdrew an open request: close it and every approver token; tell the approvers who
    were asked, the Secretariat, and the requester."""
    run(bot, request, lifecycle.Withdraw(message_row, checks))


def not_mine(
    bot: Bot,
    request: Request,
    approver: Approver,
    *,
    message_row: int | None,
    in_reply_to: str | None,
    checks: dict[str, str],
    rule: str,
) -> bool:
    """An approver answered NOT MINE: no longer live, thanked; escalates when nobody who may decide is
    left. Returns whether it escalated."""
    return run(bot, request, lifecycle.NotMine(approver.id, message_row, in_reply_to, checks, rule)).escalated


def contact_unreachable(bot: Bot, approver: Approver, state: str, why: str) -> None:
    """An approver bounced or is away: record it and, if the rules say so, escalate at once."""
    run(bot, bot.ledger.request(approver.request_id), lifecycle.Unreachable(approver.id, ApproverState(state), why))


def escalate(bot: Bot, request: Request, why: str) -> None:
    """Ask the roles not asked yet; when none are left, alert the Secretariat."""
    run(bot, request, lifecycle.EscalationDue(why))


def expire(bot: Bot, request: Request) -> None:
    run(bot, request, lifecycle.Expire())


def remind(bot: Bot, approver: Approver) -> None:
    """Send an approver who has not answered the request again, with a fresh token (the old stays valid)."""
    run(bot, bot.ledger.request(approver.request_id), lifecycle.ReminderDue(approver.id))


def delivery_failed(bot: Bot, event: DeliveryEvent) -> None:
    """An outbox item could not be delivered (5xx, or given up): note dead approvers, tell the Secretariat."""
    now = bot.now()
    failed, error = list(event.details["to"]), str(event.details["error"])
    if event.request_id is not None and event.purpose in ("approval-request", "approval-reminder"):
        for address in failed:
            approver = bot.ledger.approver_at(event.request_id, address)
            if approver is not None and approver.state in (ApproverState.ASKED, ApproverState.AWAY):
                contact_unreachable(bot, approver, "bounced", f"delivery failed: {error}")
    if event.purpose in ("delivery-failed",) or [a.lower() for a in failed] == [bot.secretariat.lower()]:
        return  # never report a failed report; the audit and the log have it
    bot.outbox.queue_mail(
        purpose="delivery-failed",
        template="delivery_failed.txt",
        context={
            "purpose": event.purpose,
            "failed": failed,
            "error": error,
            "message_id": event.message_id,
            "request_id": event.request_id,
            "bot": bot.bot_address,
            "secretariat": bot.secretariat,
            "when": when(now),
        },
        to=[bot.secretariat],
        request_id=event.request_id,
    )


def mailman_answered(bot: Bot, event: DeliveryEvent) -> None:
    """Mailman answered the REST subscription of an approved request: the state machine records it."""
    assert event.call is not None and event.request_id is not None
    details = event.details
    answered = lifecycle.MailmanAnswered(
        outbox_id=event.outbox_id,
        address=str(event.call["address"]),
        http=details.get("http"),
        said=str(details.get("said", "")),
        error=str(details.get("error", "")),
    )
    run(bot, bot.ledger.request(event.request_id), answered)


# --- contacts that change --------------------------------------------------------------------------


def contacts_checked(bot: Bot, cctld: str, resolution: Resolution) -> dict[str, Any]:
    """IANA was asked again about a ccTLD: re-send open requests to new contacts, close the tokens of
    contacts no longer listed, and tell the Secretariat about members vouched for by such contacts."""
    now = bot.now()
    record = resolution.record
    assert record is not None
    listed = {address_key(a.email) for a in record.approvers(tuple(bot.rules.approvers.roles))}
    changed_requests = []
    for request in bot.ledger.requests(states=[RequestState.PENDING], cctld=cctld):
        outcome = run(bot, request, lifecycle.ContactsChanged(resolution))
        changed = next((a for a in outcome.audits if a.action == "contacts-changed"), None)
        if changed is not None:
            changed_requests.append(
                {
                    "id": request.id,
                    "requester": request.requester,
                    "removed": changed.details["removed"],
                    "asked": changed.details["asked"],
                }
            )
    stale_members = [
        {"id": r.id, "requester": r.requester, "decided_by": r.decided_by, "decided_at": r.decided_at}
        for r in bot.ledger.approved_by_mail(cctld)
        if address_key(r.decided_by or "") not in listed
    ]
    fingerprint = ",".join(sorted(f"{m['id']}:{str(m['decided_by']).lower()}" for m in stale_members))
    already = bot.store.one(
        "SELECT 1 FROM audit WHERE action = 'stale-approvers-reported' AND details LIKE ?",
        (f'%"fingerprint": "{cctld}|{fingerprint}"%',),
    )
    report_members = bool(stale_members) and already is None
    if report_members:
        bot.store.audit(
            "stale-approvers-reported",
            at=now,
            cctld=cctld,
            fingerprint=f"{cctld}|{fingerprint}",
            members=[m["id"] for m in stale_members],
        )
    if changed_requests or report_members:
        name = parse_tld(cctld)
        bot.outbox.queue_mail(
            purpose="contacts-changed",
            template="contacts_changed.txt",
            context={
                "cctld_display": name.display(),
                "contacts": [
                    {"email": a.email, "roles": list(a.roles)}
                    for a in record.approvers(tuple(bot.rules.approvers.roles))
                ],
                "requests": changed_requests,
                "members": stale_members if report_members else [],
                "snapshot": snapshot_summary(bot, resolution.snapshot_id),
                "bot": bot.bot_address,
                "secretariat": bot.secretariat,
            },
            to=[bot.secretariat],
        )
    return {"requests": len(changed_requests), "stale_members": len(stale_members) if report_members else 0}
