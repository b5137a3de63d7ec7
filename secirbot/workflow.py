"""A request's life: opened, approvers asked, replies judged, decided, acted on, reminded, escalated, expired.

    resolving --(IANA answers)--> pending --(APPROVE)--> approved --> Mailman subscribe
        |                            |------(DENY)-----> denied
        +----------------------------+------(time)-----> expired
        +----------------------------+--(WITHDRAW)-----> withdrawn

An approver's NOT MINE decides nothing: it takes that contact out of the live ones, and when none is left
the request escalates at once, as after silence (next roles, then the Secretariat).

`judge_reply` is pure: whether an approver's reply decides, needs a clarification, or is refused. The other
functions write the change, its audit record and the mail it causes in the caller's transaction; nothing
here sends anything (the outbox does, after the commit).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from . import delegation, mailman, membership, roster, tokens
from .authenticity import SenderCheck
from .config import Config
from .iana.names import parse_tld
from .iana.record import IanaRecord
from .iana.resolver import Resolution, load_snapshot
from .message import address_key, same_address
from .newtext import REPLY_MARKER
from .replies import ReadDecision, Verdict
from .rules import Rules
from .store import StoreError, from_iso, iso, rowid

if TYPE_CHECKING:
    from .bot import Bot
    from .intake import Claim

OPEN_STATES = ("resolving", "pending")
DECIDED_STATES = ("approved", "denied")
# Who may still decide. Not "not-mine": that contact answered that the request is not theirs to judge.
LIVE_APPROVER_STATES = ("asked", "bounced", "away")


# --- pure ----------------------------------------------------------------------------------------


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


# --- helpers -------------------------------------------------------------------------------------


def when(moment: datetime | str | None) -> str:
    """A moment as people read it in mail: '2026-11-26 07:13 UTC'."""
    if moment is None:
        return ""
    if isinstance(moment, str):
        moment = from_iso(moment)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def request_context(bot: Bot, request: sqlite3.Row) -> dict[str, Any]:
    """What every template may say about a request."""
    return context_for(bot.config, bot.rules, dict(request))


def context_for(config: Config, rules: Rules, request: Mapping[str, Any]) -> dict[str, Any]:
    name = parse_tld(request["cctld"])
    return {
        "request": {
            "id": request["id"],
            "cctld": name.ascii,
            "cctld_unicode": name.unicode,
            "cctld_display": name.display(),
            "requester": request["requester"],
            "name": request["requester_name"] or "",
            "words": request["claim"] or "",
            "state": request["state"],
            "created": when(request["created_at"]),
            "expires": when(request["expires_at"]),
            "decision": request["decision"] or "",
            "decided_by": request["decided_by"] or "",
            # Requesters and IANA contacts read "the Secretariat", not an operator's login name.
            "decided_by_public": (
                "the Secretariat" if request["decided_via"] == "cli" else request["decided_by"] or ""
            ),
            "decided_at": when(request["decided_at"]),
            "decision_reason": request["decision_reason"] or "",
            "replacing": request.get("replacing") or "",
        },
        "bot": config.addresses.bot,
        "secretariat": config.addresses.secretariat,
        "list_address": config.mailman.list,
        "claim_max_chars": rules.requests.claim_max_chars,
        "delegates": {
            "allow": rules.approvers.delegates.allow,
            "window": _duration(rules.approvers.delegates.objection_window),
        },
    }


def _duration(span: timedelta) -> str:
    """48h -> '48 hours', 2d -> '2 days', 90m -> '90 minutes': as a person reads it."""
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0 and not (unit == "day" and seconds // size < 3):
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def get_request(bot: Bot, request_id: int) -> sqlite3.Row:
    row = bot.store.one("SELECT * FROM requests WHERE id = ?", (request_id,))
    if row is None:
        raise KeyError(request_id)
    return row


def _set(bot: Bot, request_id: int, **fields: Any) -> None:
    fields["updated_at"] = iso(bot.now())
    names = ", ".join(f"{k} = ?" for k in fields)
    bot.store.execute(f"UPDATE requests SET {names} WHERE id = ?", (*fields.values(), request_id))


def live_approvers(bot: Bot, request_id: int) -> list[sqlite3.Row]:
    marks = ",".join("?" * len(LIVE_APPROVER_STATES))
    return bot.store.all(
        f"SELECT * FROM approvers WHERE request_id = ? AND state IN ({marks}) ORDER BY id",
        (request_id, *LIVE_APPROVER_STATES),
    )


# --- opening -------------------------------------------------------------------------------------


def open_request(bot: Bot, *, requester: str, claim: Claim, message_row: int | None, in_reply_to: str | None) -> int:
    """Create the request, waiting for its first IANA lookup (due at once; schedule.py runs it off the
    message path, and `first_lookup` then asks the approvers and acknowledges). Returns its id."""
    now = bot.now()
    cur = bot.store.execute(
        "INSERT INTO requests (cctld, requester, requester_key, requester_name, claim, state, created_at,"
        " updated_at, expires_at, source_message, snapshot_id, lookup_attempts, next_lookup_at, replacing)"
        " VALUES (?, ?, ?, ?, ?, 'resolving', ?, ?, ?, ?, NULL, 0, ?, ?)",
        (
            claim.cctld.ascii,
            requester,
            address_key(requester),
            claim.name,
            claim.words,
            iso(now),
            iso(now),
            iso(now + bot.rules.requests.expire_after),
            message_row,
            iso(now),
            claim.replacing,
        ),
    )
    request_id = rowid(cur)
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


def first_lookup(bot: Bot, request: sqlite3.Row, resolution: Resolution) -> None:
    """IANA's first answer (or failure) for a new request: ask the approvers, or wait and retry; tell the
    requester which, and the Secretariat."""
    now = bot.now()
    request_id = request["id"]
    _set(bot, request_id, lookup_attempts=1, snapshot_id=resolution.snapshot_id)
    request = get_request(bot, request_id)
    if resolution.record is not None:
        start_approval(bot, request, resolution)
    else:
        _set(bot, request_id, next_lookup_at=iso(now + bot.rules.lookups.retry_every))
        bot.store.audit(
            "lookup-failed",
            at=now,
            request_id=request_id,
            snapshot_id=resolution.snapshot_id,
            problem=_problem_text(resolution),
        )
        _notify_secretariat_of_request(bot, get_request(bot, request_id), [], _problem_text(resolution))
    request = get_request(bot, request_id)
    asked = bot.store.count("SELECT COUNT(*) FROM approvers WHERE request_id = ?", (request_id,))
    source = bot.store.one("SELECT message_id FROM messages WHERE id = ?", (request["source_message"],))
    # The requester's own reply address: a WITHDRAW sent to it closes the request.
    token = tokens.mint()
    bot.store.execute(
        "INSERT INTO requester_tokens (token_hash, request_id, issued_at) VALUES (?, ?, ?)",
        (tokens.digest(token), request_id, iso(now)),
    )
    bot.outbox.queue_mail(
        purpose="request-received",
        template="request_received.txt",
        context={**request_context(bot, request), "delayed": resolution.record is None, "asked": asked},
        to=[request["requester"]],
        in_reply_to=source["message_id"] if source else None,
        request_id=request_id,
        cause_message=request["source_message"],
        auto="auto-replied",
        reply_to=tokens.reply_address(bot.bot_address, token),
    )


def step_failed(bot: Bot, request: sqlite3.Row, reason: str) -> None:
    """The step after a lookup raised (our fault): retry it later, tell the Secretariat once. The
    request is never lost; if even the notice cannot be composed, the audit keeps the reason."""
    now = bot.now()
    retry = bot.rules.lookups.retry_every
    _set(bot, request["id"], next_lookup_at=iso(now + retry))
    bot.store.audit("step-failed", at=now, request_id=request["id"], reason=reason[:1000])
    if bot.store.one("SELECT 1 FROM outbox WHERE request_id = ? AND purpose = 'request-stuck'", (request["id"],)):
        return
    hours = retry.total_seconds() / 3600
    try:
        bot.outbox.queue_mail(
            purpose="request-stuck",
            template="request_stuck.txt",
            context={
                **request_context(bot, request),
                "reason": reason[:500],
                "retry": f"{hours:g} hour{'s' if hours != 1 else ''}",
            },
            to=[bot.secretariat],
            request_id=request["id"],
        )
    except (sqlite3.Error, StoreError):
        raise
    except Exception as exc:
        bot.store.audit("notice-not-composed", at=now, request_id=request["id"], error=f"{type(exc).__name__}: {exc}")


def _problem_text(resolution: Resolution) -> str:
    problem = resolution.problem
    return f"{problem.kind}: {problem.detail}" if problem is not None else ""


def start_approval(bot: Bot, request: sqlite3.Row, resolution: Resolution) -> None:
    """IANA answered: keep the snapshot, ask the first approvers, tell the Secretariat."""
    now = bot.now()
    record = resolution.record
    assert record is not None
    _set(
        bot,
        request["id"],
        state="pending",
        snapshot_id=resolution.snapshot_id,
        next_lookup_at=None,
        next_escalation_at=iso(now + bot.rules.escalation.after),
    )
    request = get_request(bot, request["id"])
    bot.store.audit(
        "state-changed",
        at=now,
        request_id=request["id"],
        state="pending",
        snapshot_id=resolution.snapshot_id,
        source=record.source,
    )
    asked = ask_approvers(bot, request, record, bot.rules.approvers.ask_first)
    note = ""
    if not asked:
        note = (
            "The requester is the only IANA contact of this ccTLD who may approve: nobody was asked. "
            f"Decide with: secirbot approve {request['id']}  or  secirbot deny {request['id']} --reason ..."
        )
    _notify_secretariat_of_request(bot, request, asked, note)


def eligible_approvers(bot: Bot, request: sqlite3.Row, record: IanaRecord, roles: Sequence[str]) -> list:
    """The IANA contacts of these roles who may decide this request (never the requester)."""
    return [a for a in record.approvers(tuple(roles)) if address_key(a.email) != request["requester_key"]]


def ask_approvers(bot: Bot, request: sqlite3.Row, record: IanaRecord, roles: Sequence[str]) -> list[str]:
    """Mail each not-yet-asked approver of these roles their own approval request. Returns who was asked."""
    known = {
        r["email_key"] for r in bot.store.all("SELECT email_key FROM approvers WHERE request_id = ?", (request["id"],))
    }
    asked = []
    for approver in eligible_approvers(bot, request, record, roles):
        if address_key(approver.email) in known:
            continue
        ask(bot, request, approver.email, approver.name, approver.roles, record)
        asked.append(approver.email)
    return asked


def ask(bot: Bot, request: sqlite3.Row, email: str, name: str, roles: Sequence[str], record: IanaRecord) -> int:
    now = bot.now()
    reminders = bot.rules.reminders
    cur = bot.store.execute(
        "INSERT INTO approvers (request_id, email, email_key, roles, name, state, asked_at, expires_at,"
        " next_reminder_at) VALUES (?, ?, ?, ?, ?, 'asked', ?, ?, ?)",
        (
            request["id"],
            email,
            address_key(email),
            ",".join(roles),
            name,
            iso(now),
            request["expires_at"],
            iso(now + reminders.first_after) if reminders.max > 0 else None,
        ),
    )
    approver_id = rowid(cur)
    bot.store.audit("approver-asked", at=now, request_id=request["id"], approver=email, roles=list(roles))
    _mail_approval_request(bot, request, approver_id, email, name, roles, record, reminder=0)
    return approver_id


def _new_token(bot: Bot, approver_id: int) -> str:
    """One more reply token for this approver (each mail to them gets its own; any of them answers)."""
    token = tokens.mint()
    bot.store.execute(
        "INSERT INTO tokens (token_hash, approver_id, issued_at) VALUES (?, ?, ?)",
        (tokens.digest(token), approver_id, iso(bot.now())),
    )
    return token


def _mail_approval_request(
    bot: Bot,
    request: sqlite3.Row,
    approver_id: int,
    email: str,
    name: str,
    roles: Sequence[str],
    record: IanaRecord | None,
    reminder: int,
) -> None:
    token = _new_token(bot, approver_id)
    context = {
        **request_context(bot, request),
        "approver": {"email": email, "name": name or "", "roles": list(roles)},
        "organisation": record.organisation if record else "",
        "marker": REPLY_MARKER,
        "reminder": reminder,
    }
    bot.outbox.queue_mail(
        purpose="approval-request" if not reminder else "approval-reminder",
        template="approval_request.txt",
        context=context,
        to=[email],
        reply_to=tokens.reply_address(bot.bot_address, token),
        request_id=request["id"],
        language=bot.rules.languages.for_cctld(request["cctld"]),
    )


def _notify_secretariat_of_request(bot: Bot, request: sqlite3.Row, asked: Sequence[str], note: str) -> None:
    """The Secretariat's copy of a request: everything the approvers see, but no token."""
    bot.outbox.queue_mail(
        purpose="request-copy",
        template="request_copy.txt",
        context={**request_context(bot, request), "asked": list(asked), "note": note},
        to=[bot.secretariat],
        request_id=request["id"],
    )


def retry_lookup(bot: Bot, request: sqlite3.Row, resolution: Resolution) -> None:
    """A scheduled retry of IANA for a request that is waiting for it."""
    now = bot.now()
    attempts = request["lookup_attempts"] + 1
    if resolution.record is not None:
        _set(bot, request["id"], lookup_attempts=attempts)
        start_approval(bot, get_request(bot, request["id"]), resolution)
        return
    _set(
        bot,
        request["id"],
        lookup_attempts=attempts,
        snapshot_id=resolution.snapshot_id,
        next_lookup_at=iso(now + bot.rules.lookups.retry_every),
    )
    bot.store.audit(
        "lookup-failed",
        at=now,
        request_id=request["id"],
        snapshot_id=resolution.snapshot_id,
        problem=_problem_text(resolution),
        attempts=attempts,
    )
    waited = now - from_iso(request["created_at"])
    already_told = bot.store.one(
        "SELECT 1 FROM audit WHERE request_id = ? AND action = 'lookup-alert'", (request["id"],)
    )
    if waited >= bot.rules.lookups.tell_secretariat_after and not already_told:
        bot.store.audit("lookup-alert", at=now, request_id=request["id"])
        bot.outbox.queue_mail(
            purpose="lookup-failing",
            template="lookup_failing.txt",
            context={
                **request_context(bot, request),
                "problem": _problem_text(resolution),
                "attempts": attempts,
                "waited_hours": int(waited.total_seconds() // 3600),
            },
            to=[bot.secretariat],
            request_id=request["id"],
        )


# --- deciding ------------------------------------------------------------------------------------


def decide(
    bot: Bot,
    request: sqlite3.Row,
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
    now = bot.now()
    # A delegated APPROVE still in its window is overtaken by this decision (a contact's own, the Secretariat's).
    delegation.end_all_waiting(bot.store, request["id"], delegation.DelegationState.SUPERSEDED, now=now, by=decided_by)
    state = "approved" if verdict is Verdict.APPROVE else "denied"
    _set(
        bot,
        request["id"],
        state=state,
        decision=verdict.value,
        decided_by=decided_by,
        decided_at=iso(now),
        decided_via=via,
        decision_reason=reason or None,
        mailman_status="queued" if state == "approved" else None,
        next_lookup_at=None,
        next_escalation_at=None,
    )
    if approver_id is not None:
        bot.store.execute("UPDATE approvers SET state = 'used', used_at = ? WHERE id = ?", (iso(now), approver_id))
    others = [a for a in live_approvers(bot, request["id"]) if a["id"] != approver_id]
    bot.store.execute(
        "UPDATE approvers SET state = 'closed', next_reminder_at = NULL"
        " WHERE request_id = ? AND state IN ('asked', 'bounced', 'away')",
        (request["id"],),
    )
    bot.store.audit(
        "request-decided",
        at=now,
        actor=actor or decided_by,
        request_id=request["id"],
        message_row=message_row,
        decision=verdict.value,
        via=via,
        rule=rule,
        checks=checks,
        snapshot_id=request["snapshot_id"],
        reason=reason,
        headers=headers,
    )
    request = get_request(bot, request["id"])
    context = request_context(bot, request)
    if state == "approved":
        roster.admit(bot.store, request, now=now, actor=actor or decided_by)
        mailman.queue_subscribe(bot, request)
        replaced = roster.on_list(bot.store, request["replacing"]) if request["replacing"] else None
        if replaced is not None and replaced.state is roster.MemberState.MEMBER:
            # The approval was asked and given for this replacement: the one replaced leaves the list.
            membership.remove(
                bot,
                replaced,
                actor=actor or decided_by,
                reason=f"replaced by {request['requester']} (request #{request['id']})",
                asked_by=f"The approved request #{request['id']}",
                cause_message=message_row,
            )
        bot.outbox.queue_mail(
            purpose="decision-requester",
            template="approved_requester.txt",
            context={**context, "dialect": bot.config.mailman.dialect},
            to=[request["requester"]],
            request_id=request["id"],
        )
    else:
        show_reason = reason if bot.rules.decisions.tell_requester_deny_reason else ""
        bot.outbox.queue_mail(
            purpose="decision-requester",
            template="denied_requester.txt",
            context={**context, "reason": show_reason},
            to=[request["requester"]],
            request_id=request["id"],
        )
    bot.outbox.queue_mail(
        purpose="decision-secretariat",
        template="decision_secretariat.txt",
        context={
            **context,
            "via": via,
            "checks": checks,
            "rule": rule,
            "snapshot": snapshot_summary(bot, request["snapshot_id"]),
        },
        to=[bot.secretariat],
        request_id=request["id"],
    )
    if approver_id is not None:
        decider = bot.store.one("SELECT email, name FROM approvers WHERE id = ?", (approver_id,))
        assert decider is not None  # the approver row of this very decision
        if same_address(decided_by, decider["email"]):
            recorded_for = {"email": decider["email"], "name": decider["name"]}
        else:
            # Answered on the contact's behalf (delegation.py): "your answer is recorded" goes to the person
            # who answered; the contact hears of the decision like the other contacts.
            recorded_for = {"email": decided_by, "name": ""}
            others.append(decider)
        bot.outbox.queue_mail(
            purpose="decision-recorded",
            template="decision_recorded.txt",
            context={**context, "approver": recorded_for},
            to=[recorded_for["email"]],
            request_id=request["id"],
            language=bot.rules.languages.for_cctld(request["cctld"]),
        )
    for other in others:
        bot.outbox.queue_mail(
            purpose="decision-approvers",
            template="decision_approvers.txt",
            context={**context, "approver": {"email": other["email"], "name": other["name"]}},
            to=[other["email"]],
            request_id=request["id"],
            language=bot.rules.languages.for_cctld(request["cctld"]),
        )


# --- delegated answers (delegation.py has the conditions and the table) ------------------------------


def iana_contacts(bot: Bot, request: sqlite3.Row) -> list[str]:
    """Every IANA contact address of the request's ccTLD: those asked, and all in the IANA answer kept."""
    found = [r["email"] for r in bot.store.all("SELECT email FROM approvers WHERE request_id = ?", (request["id"],))]
    record = load_snapshot(bot.store, request["snapshot_id"]) if request["snapshot_id"] else None
    if record is not None:
        found += [c.email for c in record.contacts]
    return found


def _delegation_mails(
    bot: Bot, request: sqlite3.Row, template: str, purpose: str, extra: dict[str, Any], delegate: str
) -> None:
    """The same notice to every contact asked (each with a fresh token: OBJECT, APPROVE or DENY answer
    it), to the delegate and to the Secretariat (no token)."""
    context = {**request_context(bot, request), **extra}
    for approver in live_approvers(bot, request["id"]):
        token = _new_token(bot, approver["id"])
        bot.outbox.queue_mail(
            purpose=purpose,
            template=template,
            context={**context, "approver": {"email": approver["email"], "name": approver["name"] or ""}},
            to=[approver["email"]],
            reply_to=tokens.reply_address(bot.bot_address, token),
            request_id=request["id"],
            language=bot.rules.languages.for_cctld(request["cctld"]),
        )
    # The delegate and the Secretariat: English, like every mail that is not to a ccTLD's IANA contact.
    for address in (delegate, bot.secretariat):
        bot.outbox.queue_mail(
            purpose=purpose,
            template=template,
            context={**context, "approver": None},
            to=[address],
            request_id=request["id"],
        )


def delegated_approve(
    bot: Bot, request: sqlite3.Row, approver: sqlite3.Row, *, delegate: str, checks: dict[str, str], message_row: int
) -> None:
    """A qualifying delegate answered APPROVE: provisional until the objection window ends."""
    now = bot.now()
    takes_effect = now + bot.rules.approvers.delegates.objection_window
    delegation.record(
        bot.store,
        request_id=request["id"],
        approver_id=approver["id"],
        delegate=delegate,
        verdict="APPROVE",
        state=delegation.DelegationState.WAITING,
        checks=checks,
        now=now,
        takes_effect_at=takes_effect,
        message_row=message_row,
    )
    bot.store.audit(
        "delegated-answer",
        at=now,
        actor=delegate,
        request_id=request["id"],
        message_row=message_row,
        decision="APPROVE",
        delegated_by=delegate,
        delegated_for=approver["email"],
        takes_effect_at=iso(takes_effect),
        checks=checks,
    )
    _delegation_mails(
        bot,
        request,
        "delegated_notice.txt",
        "delegated-notice",
        {"delegate": delegate, "contact": approver["email"], "takes_effect": when(takes_effect)},
        delegate,
    )


def delegated_deny(
    bot: Bot,
    request: sqlite3.Row,
    approver: sqlite3.Row,
    *,
    delegate: str,
    checks: dict[str, str],
    reason: str,
    message_row: int,
    headers: str,
) -> None:
    """A qualifying delegate answered DENY: it takes effect at once; the Secretariat is told who gave it."""
    now = bot.now()
    delegation.record(
        bot.store,
        request_id=request["id"],
        approver_id=approver["id"],
        delegate=delegate,
        verdict="DENY",
        state=delegation.DelegationState.EFFECTIVE,
        checks=checks,
        now=now,
        takes_effect_at=now,
        message_row=message_row,
    )
    decide(
        bot,
        request,
        Verdict.DENY,
        decided_by=delegate,
        via=f"delegated for {approver['email']}",
        reason=reason,
        approver_id=approver["id"],
        message_row=message_row,
        checks=checks,
        rule="delegated",
        headers=headers,
        actor=delegate,
    )


def delegation_objected(
    bot: Bot, request: sqlite3.Row, waiting: delegation.Delegation, *, objector: str, message_row: int | None
) -> None:
    """OBJECT in the window: the delegated APPROVE is cancelled, the request stays open, everyone is told."""
    now = bot.now()
    delegation.end(bot.store, waiting.id, delegation.DelegationState.OBJECTED, now=now, by=objector)
    contact = bot.store.one("SELECT email FROM approvers WHERE id = ?", (waiting.approver_id,))
    bot.store.audit(
        "delegation-objected",
        at=now,
        actor=objector,
        request_id=request["id"],
        message_row=message_row,
        delegated_by=waiting.delegate,
        delegated_for=contact["email"] if contact else "",
        objector=objector,
    )
    _delegation_mails(
        bot,
        request,
        "delegation_objected.txt",
        "delegation-objected",
        {"delegate": waiting.delegate, "contact": contact["email"] if contact else "", "objector": objector},
        waiting.delegate,
    )


def delegation_due(bot: Bot, waiting: delegation.Delegation) -> bool:
    """The objection window of a delegated APPROVE ended without an OBJECT: it decides the request, if the
    request is still open. Returns whether it decided."""
    request = get_request(bot, waiting.request_id)
    now = bot.now()
    if request["state"] not in OPEN_STATES:
        delegation.end(bot.store, waiting.id, delegation.DelegationState.SUPERSEDED, now=now, by="bot")
        return False
    contact = bot.store.one("SELECT email FROM approvers WHERE id = ?", (waiting.approver_id,))
    delegation.end(bot.store, waiting.id, delegation.DelegationState.EFFECTIVE, now=now, by="objection window")
    decide(
        bot,
        request,
        Verdict.APPROVE,
        decided_by=waiting.delegate,
        via=f"delegated for {contact['email'] if contact else '?'}",
        reason="",
        approver_id=waiting.approver_id,
        message_row=waiting.message_row,
        checks={**{k: str(v) for k, v in waiting.authentication.items()}, "objection_window": "ended, no OBJECT"},
        rule="delegated-after-window",
        actor="bot",
    )
    return True


def withdraw(bot: Bot, request: sqlite3.Row, *, message_row: int | None, checks: dict[str, str]) -> None:
    """The requester withdrew an open request: close it and every approver token; tell the approvers who
    were asked, the Secretariat, and the requester."""
    now = bot.now()
    asked = live_approvers(bot, request["id"])
    _set(bot, request["id"], state="withdrawn", next_lookup_at=None, next_escalation_at=None)
    bot.store.execute(
        "UPDATE approvers SET state = 'closed', next_reminder_at = NULL"
        " WHERE request_id = ? AND state IN ('asked', 'bounced', 'away')",
        (request["id"],),
    )
    bot.store.audit(
        "request-withdrawn",
        at=now,
        actor=request["requester"],
        request_id=request["id"],
        message_row=message_row,
        checks=checks,
        told=[a["email"] for a in asked],
    )
    request = get_request(bot, request["id"])
    context = request_context(bot, request)
    bot.outbox.queue_mail(
        purpose="withdrawn-requester",
        template="withdrawn_requester.txt",
        context=context,
        to=[request["requester"]],
        request_id=request["id"],
    )
    bot.outbox.queue_mail(
        purpose="withdrawn-secretariat",
        template="withdrawn_notice.txt",
        context={**context, "approver": None, "asked": [a["email"] for a in asked], "withdrawn_at": when(now)},
        to=[bot.secretariat],
        request_id=request["id"],
    )
    for other in asked:
        bot.outbox.queue_mail(
            purpose="withdrawn-approvers",
            template="withdrawn_notice.txt",
            context={
                **context,
                "approver": {"email": other["email"], "name": other["name"]},
                "asked": [],
                "withdrawn_at": when(now),
            },
            to=[other["email"]],
            request_id=request["id"],
            language=bot.rules.languages.for_cctld(request["cctld"]),
        )


def not_mine(
    bot: Bot,
    request: sqlite3.Row,
    approver: sqlite3.Row,
    *,
    message_row: int | None,
    in_reply_to: str | None,
    checks: dict[str, str],
    rule: str,
) -> bool:
    """An approver answered NOT MINE: record it on their row (no longer live, no more reminders), thank
    them, and when no contact who may decide is left, escalate at once. Returns whether it escalated."""
    now = bot.now()
    bot.store.execute(
        "UPDATE approvers SET state = 'not-mine', used_at = ?, next_reminder_at = NULL WHERE id = ?",
        (iso(now), approver["id"]),
    )
    left = live_approvers(bot, request["id"])
    bot.store.audit(
        "approver-not-mine",
        at=now,
        actor=approver["email"],
        request_id=request["id"],
        message_row=message_row,
        approver=approver["email"],
        rule=rule,
        checks=checks,
        left=[a["email"] for a in left],
    )
    bot.outbox.queue_mail(
        purpose="not-mine-recorded",
        template="not_mine_recorded.txt",
        context={
            **request_context(bot, request),
            "approver": {"email": approver["email"], "name": approver["name"] or ""},
            "recorded_at": when(now),
        },
        to=[approver["email"]],
        in_reply_to=in_reply_to,
        request_id=request["id"],
        cause_message=message_row,
        auto="auto-replied",
        language=bot.rules.languages.for_cctld(request["cctld"]),
    )
    if left:
        return False
    # Bounced and away contacts are still live (they may answer): only when nobody is, escalate now.
    said = [
        a["email"]
        for a in bot.store.all(
            "SELECT email FROM approvers WHERE request_id = ? AND state = 'not-mine' ORDER BY id", (request["id"],)
        )
    ]
    escalate(bot, get_request(bot, request["id"]), f"every contact asked answered NOT MINE ({', '.join(said)})")
    return True


def snapshot_summary(bot: Bot, snapshot_id: int | None) -> dict[str, Any]:
    if snapshot_id is None:
        return {"id": None, "source": "", "fetched": ""}
    row = bot.store.one("SELECT id, source, fetched_at FROM iana_snapshots WHERE id = ?", (snapshot_id,))
    if row is None:
        return {"id": snapshot_id, "source": "", "fetched": ""}
    return {"id": row["id"], "source": row["source"], "fetched": when(row["fetched_at"])}


# --- failures, expiry, reminders, escalation ------------------------------------------------------


def delivery_failed(bot: Bot, row: sqlite3.Row, failed: list[str], error: str) -> None:
    """An outbox item could not be delivered (5xx, or given up): note dead approvers, tell the Secretariat."""
    now = bot.now()
    if row["request_id"] is not None and row["purpose"] in ("approval-request", "approval-reminder"):
        for address in failed:
            approver = bot.store.one(
                "SELECT * FROM approvers WHERE request_id = ? AND email_key = ?",
                (row["request_id"], address_key(address)),
            )
            if approver is not None and approver["state"] in ("asked", "away"):
                contact_unreachable(bot, approver, "bounced", f"delivery failed: {error}")
    if row["purpose"] in ("delivery-failed",) or [a.lower() for a in failed] == [bot.secretariat.lower()]:
        return  # never report a failed report; the audit and the log have it
    bot.outbox.queue_mail(
        purpose="delivery-failed",
        template="delivery_failed.txt",
        context={
            "purpose": row["purpose"],
            "failed": failed,
            "error": error,
            "message_id": row["message_id"],
            "request_id": row["request_id"],
            "bot": bot.bot_address,
            "secretariat": bot.secretariat,
            "when": when(now),
        },
        to=[bot.secretariat],
        request_id=row["request_id"],
    )


def contact_unreachable(bot: Bot, approver: sqlite3.Row, state: str, why: str) -> None:
    """An approver bounced or is away: record it and, if the rules say so, escalate at once."""
    now = bot.now()
    bot.store.execute("UPDATE approvers SET state = ? WHERE id = ?", (state, approver["id"]))
    bot.store.audit(f"approver-{state}", at=now, request_id=approver["request_id"], approver=approver["email"], why=why)
    request = get_request(bot, approver["request_id"])
    if request["state"] != "pending":
        return
    wanted = bot.rules.escalation.on_bounce if state == "bounced" else bot.rules.escalation.on_auto_reply
    still_reachable = [a for a in live_approvers(bot, request["id"]) if a["state"] == "asked"]
    if wanted and not still_reachable:
        escalate(bot, request, f"{approver['email']} {state}: {why}")


def escalate(bot: Bot, request: sqlite3.Row, why: str) -> None:
    """Ask the roles not asked yet; when none are left, alert the Secretariat (once)."""
    now = bot.now()
    stage = request["escalation_stage"] + 1
    record = load_snapshot(bot.store, request["snapshot_id"]) if request["snapshot_id"] else None
    asked = ask_approvers(bot, request, record, bot.rules.approvers.roles) if record else []
    _set(
        bot,
        request["id"],
        escalation_stage=stage,
        next_escalation_at=iso(now + bot.rules.escalation.after) if asked else None,
    )
    bot.store.audit("escalated", at=now, request_id=request["id"], stage=stage, why=why, asked=asked)
    if not asked:
        bot.outbox.queue_mail(
            purpose="escalation",
            template="escalation_secretariat.txt",
            context={
                **request_context(bot, request),
                "why": why,
                "approvers": [
                    dict(a)
                    for a in bot.store.all(
                        "SELECT email, roles, state, asked_at, reminders_sent FROM approvers WHERE request_id = ?",
                        (request["id"],),
                    )
                ],
            },
            to=[bot.secretariat],
            request_id=request["id"],
        )


def expire(bot: Bot, request: sqlite3.Row) -> None:
    now = bot.now()
    _set(bot, request["id"], state="expired", next_lookup_at=None, next_escalation_at=None)
    bot.store.execute(
        "UPDATE approvers SET state = 'closed', next_reminder_at = NULL"
        " WHERE request_id = ? AND state IN ('asked', 'bounced', 'away')",
        (request["id"],),
    )
    bot.store.audit("state-changed", at=now, request_id=request["id"], state="expired")
    request = get_request(bot, request["id"])
    context = request_context(bot, request)
    bot.outbox.queue_mail(
        purpose="expired-requester",
        template="expired_requester.txt",
        context=context,
        to=[request["requester"]],
        request_id=request["id"],
    )
    bot.outbox.queue_mail(
        purpose="expired-secretariat",
        template="expired_secretariat.txt",
        context={
            **context,
            "approvers": [
                dict(a)
                for a in bot.store.all(
                    "SELECT email, roles, state, reminders_sent FROM approvers WHERE request_id = ?", (request["id"],)
                )
            ],
        },
        to=[bot.secretariat],
        request_id=request["id"],
    )


def remind(bot: Bot, approver: sqlite3.Row) -> None:
    """Send an approver who has not answered the request again, with a fresh token (the old stays valid)."""
    now = bot.now()
    request = get_request(bot, approver["request_id"])
    sent = approver["reminders_sent"] + 1
    more = sent < bot.rules.reminders.max
    bot.store.execute(
        "UPDATE approvers SET reminders_sent = ?, next_reminder_at = ? WHERE id = ?",
        (sent, iso(now + bot.rules.reminders.every) if more else None, approver["id"]),
    )
    bot.store.audit("approver-reminded", at=now, request_id=request["id"], approver=approver["email"], reminder=sent)
    record = load_snapshot(bot.store, request["snapshot_id"]) if request["snapshot_id"] else None
    _mail_approval_request(
        bot,
        request,
        approver["id"],
        approver["email"],
        approver["name"],
        approver["roles"].split(","),
        record,
        reminder=sent,
    )


def approver_rows(bot: Bot, request_id: int) -> list[dict[str, Any]]:
    return [dict(r) for r in bot.store.all("SELECT * FROM approvers WHERE request_id = ? ORDER BY id", (request_id,))]


def audit_rows(bot: Bot, request_id: int) -> list[dict[str, Any]]:
    out = []
    for row in bot.store.all("SELECT * FROM audit WHERE request_id = ? ORDER BY id", (request_id,)):
        item = dict(row)
        item["details"] = json.loads(item["details"])
        out.append(item)
    return out


# --- contacts that change --------------------------------------------------------------------------


def contacts_checked(bot: Bot, cctld: str, resolution: Resolution) -> dict[str, Any]:
    """IANA was asked again about a ccTLD: re-send open requests to new contacts, close the tokens of
    contacts no longer listed, and tell the Secretariat about members vouched for by such contacts."""
    now = bot.now()
    record = resolution.record
    assert record is not None
    listed = {address_key(a.email) for a in record.approvers(tuple(bot.rules.approvers.roles))}
    changed_requests = []
    for request in bot.store.all("SELECT * FROM requests WHERE cctld = ? AND state = 'pending'", (cctld,)):
        live = live_approvers(bot, request["id"])
        gone = [a for a in live if a["email_key"] not in listed]
        known = {
            r["email_key"]
            for r in bot.store.all("SELECT email_key FROM approvers WHERE request_id = ?", (request["id"],))
        }
        # A request that already escalated asks every approving role, not only the first ones.
        roles = bot.rules.approvers.roles if request["escalation_stage"] else bot.rules.approvers.ask_first
        new = [a for a in eligible_approvers(bot, request, record, roles) if address_key(a.email) not in known]
        if not gone and not new:
            continue
        for approver in gone:
            bot.store.execute(
                "UPDATE approvers SET state = 'closed', next_reminder_at = NULL WHERE id = ?", (approver["id"],)
            )
        _set(bot, request["id"], snapshot_id=resolution.snapshot_id)
        request = get_request(bot, request["id"])
        asked = ask_approvers(bot, request, record, roles)
        if not asked and not live_approvers(bot, request["id"]):
            escalate(bot, request, "the IANA contacts changed and none of the new ones was asked yet")
        if gone or asked:
            bot.store.audit(
                "contacts-changed",
                at=now,
                request_id=request["id"],
                cctld=cctld,
                snapshot_id=resolution.snapshot_id,
                removed=[a["email"] for a in gone],
                asked=asked,
            )
            changed_requests.append(
                {
                    "id": request["id"],
                    "requester": request["requester"],
                    "removed": [a["email"] for a in gone],
                    "asked": asked,
                }
            )
    stale_members = [
        dict(r)
        for r in bot.store.all(
            "SELECT id, requester, decided_by, decided_at FROM requests WHERE cctld = ? AND state = 'approved'"
            " AND decided_via = 'mail' ORDER BY id",
            (cctld,),
        )
        if address_key(r["decided_by"]) not in listed
    ]
    fingerprint = ",".join(sorted(f"{m['id']}:{m['decided_by'].lower()}" for m in stale_members))
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
