"""A request's life as a pure state machine: `transition(request, event, world) -> Outcome`.

No I/O here. An Outcome is the ordered list of what the event changes and causes (row changes, approvers to
ask, audit entries, mails to compose with their template and context, Mailman and roster actions);
`workflow.apply` writes it in the caller's transaction and the outbox sends the mail after the commit.

Every (state, event) pair the bot knows is in `TABLE`; any other pair is refused with an audit entry
(`transition-refused`) and changes nothing:

    resolving --Looked(record)--> pending --Decide(APPROVE)--> approved --> roster + Mailman subscribe
        |  ^--Looked(failure)--'     |  |---Decide(DENY), DelegatedDeny--> denied
        |  '--StepFailed             |  |---DelegationDue (window over, no OBJECT)--> approved
        |                            |  '---NotMine, Unreachable, EscalationDue, ReminderDue, ContactsChanged,
        |                            |      DelegatedApprove, DelegationObjected --> pending
        +-----Decide (the Secretariat, --force)-> approved | denied
        +-----Expire-----------------+--------> expired
        '-----Withdraw---------------'--------> withdrawn
    approved | denied | expired | withdrawn --DelegationDue--> (unchanged: the waiting delegation is superseded)
    approved --MailmanAnswered (the REST subscription's answer)--> approved, its mailman_status set

An approver's NOT MINE decides nothing: it takes that contact out of the live ones, and when none is left the
request escalates at once, as after silence (next roles, then the Secretariat).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from .clock import from_iso, iso
from .compose import ENGLISH, Language
from .config import Config
from .delegation import Delegation, DelegationState
from .iana.names import parse_tld
from .iana.record import IanaRecord
from .iana.resolver import Resolution
from .ledger import Approver, ApproverState, Request, RequestState
from .message import address_key, same_address
from .newtext import REPLY_MARKER
from .replies import Verdict
from .roster import Member, MemberState
from .rules import Rules

# --- what a transition may know besides the request and the event --------------------------------------


@dataclass(frozen=True)
class World:
    """The facts a transition reads, gathered by the caller before it (`workflow.world`)."""

    config: Config
    rules: Rules
    now: datetime
    approvers: tuple[Approver, ...] = ()  # every approver row of the request, oldest first
    record: IanaRecord | None = None  # the IANA answer kept for the request (its snapshot)
    snapshot: Mapping[str, Any] = field(default_factory=dict)  # id, source, fetched: for the Secretariat
    source_message_id: str | None = None  # the Message-ID of the request's own mail
    lookup_alerted: bool = False  # the Secretariat was already told that IANA keeps failing
    stuck_reported: bool = False  # the Secretariat was already told that a step keeps failing
    replaced: Member | None = None  # the member an approved replacement takes over from

    def approver(self, approver_id: int | None) -> Approver | None:
        return next((a for a in self.approvers if a.id == approver_id), None)


# --- events ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Looked:
    """IANA answered (or failed) for a request waiting for it; `first` for the first lookup."""

    resolution: Resolution
    first: bool


@dataclass(frozen=True)
class StepFailed:
    """The step after a lookup raised (our fault)."""

    reason: str


@dataclass(frozen=True)
class Decide:
    verdict: Verdict
    decided_by: str
    via: str
    reason: str
    approver_id: int | None
    message_row: int | None
    checks: Mapping[str, str]
    rule: str
    headers: str = ""
    actor: str | None = None


@dataclass(frozen=True)
class DelegatedApprove:
    approver_id: int
    delegate: str
    checks: Mapping[str, str]
    message_row: int


@dataclass(frozen=True)
class DelegatedDeny:
    approver_id: int
    delegate: str
    checks: Mapping[str, str]
    reason: str
    message_row: int
    headers: str


@dataclass(frozen=True)
class DelegationObjected:
    waiting: Delegation
    objector: str
    message_row: int | None


@dataclass(frozen=True)
class DelegationDue:
    waiting: Delegation


@dataclass(frozen=True)
class Withdraw:
    message_row: int | None
    checks: Mapping[str, str]


@dataclass(frozen=True)
class NotMine:
    approver_id: int
    message_row: int | None
    in_reply_to: str | None
    checks: Mapping[str, str]
    rule: str


@dataclass(frozen=True)
class Unreachable:
    """An approver bounced or is away (state: bounced | away)."""

    approver_id: int
    state: ApproverState
    why: str


@dataclass(frozen=True)
class EscalationDue:
    why: str


@dataclass(frozen=True)
class ReminderDue:
    approver_id: int


@dataclass(frozen=True)
class Expire:
    pass


@dataclass(frozen=True)
class ContactsChanged:
    """IANA was asked again about the ccTLD and lists these approvers now."""

    resolution: Resolution


@dataclass(frozen=True)
class MailmanAnswered:
    """Mailman answered the approved request's queued REST subscription (`outbox.DeliveryEvent`); `http` is
    None when Mailman was never reached and the outbox gave up."""

    outbox_id: int
    address: str
    http: int | None
    said: str = ""
    error: str = ""


Event = (
    Looked
    | StepFailed
    | Decide
    | DelegatedApprove
    | DelegatedDeny
    | DelegationObjected
    | DelegationDue
    | Withdraw
    | NotMine
    | Unreachable
    | EscalationDue
    | ReminderDue
    | Expire
    | ContactsChanged
    | MailmanAnswered
)
EVENTS: tuple[type, ...] = (
    Looked,
    StepFailed,
    Decide,
    DelegatedApprove,
    DelegatedDeny,
    DelegationObjected,
    DelegationDue,
    Withdraw,
    NotMine,
    Unreachable,
    EscalationDue,
    ReminderDue,
    Expire,
    ContactsChanged,
    MailmanAnswered,
)


# --- effects: what an Outcome asks `workflow.apply` to do, in order ------------------------------------


@dataclass(frozen=True)
class SetRequest:
    changes: Mapping[str, Any]


@dataclass(frozen=True)
class SetApprover:
    approver_id: int
    changes: Mapping[str, Any]


@dataclass(frozen=True)
class CloseLiveApprovers:
    pass


@dataclass(frozen=True)
class AddApprover:
    """Ask one more IANA contact; `key` names it for the mail that follows (its id is not known yet)."""

    key: int
    email: str
    name: str
    roles: tuple[str, ...]
    next_reminder_at: datetime | None


@dataclass(frozen=True)
class Audit:
    action: str
    details: Mapping[str, Any]
    actor: str = "bot"
    message_row: int | None = None


@dataclass(frozen=True)
class ReplyToken:
    """The Reply-To of a mail is a fresh token: of an approver row, of one added in this Outcome (`added`
    is its AddApprover key), or of the requester."""

    approver_id: int | None = None
    added: int | None = None
    requester: bool = False


@dataclass(frozen=True)
class Mail:
    purpose: str
    template: str
    context: Mapping[str, Any]
    to: tuple[str, ...]
    reply_token: ReplyToken | None = None
    in_reply_to: str | None = None
    cause_message: int | None = None
    auto: Literal["auto-generated", "auto-replied"] = "auto-generated"
    language: Language = ENGLISH
    fallible: bool = False  # if it cannot be composed, audit that instead (a notice must not stop a step)


@dataclass(frozen=True)
class Admit:
    """The approved requester goes on the roster."""

    actor: str


@dataclass(frozen=True)
class Subscribe:
    """Queue the Mailman subscription (by mail command or REST, as configured)."""


@dataclass(frozen=True)
class RemoveMember:
    member: Member
    actor: str
    reason: str
    asked_by: str
    cause_message: int | None


@dataclass(frozen=True)
class RecordDelegation:
    approver_id: int
    delegate: str
    verdict: str
    state: DelegationState
    checks: Mapping[str, str]
    takes_effect_at: datetime
    message_row: int


@dataclass(frozen=True)
class EndDelegation:
    delegation_id: int
    state: DelegationState
    by: str


@dataclass(frozen=True)
class EndWaitingDelegations:
    state: DelegationState
    by: str


Effect = (
    SetRequest
    | SetApprover
    | CloseLiveApprovers
    | AddApprover
    | Audit
    | Mail
    | Admit
    | Subscribe
    | RemoveMember
    | RecordDelegation
    | EndDelegation
    | EndWaitingDelegations
)


@dataclass(frozen=True)
class Outcome:
    state: RequestState  # the request's state after the event
    effects: tuple[Effect, ...]
    refused: str | None = None  # why the event does not apply in this state (nothing changed but an audit)
    escalated: bool = False
    decided: bool = False

    @property
    def audits(self) -> list[Audit]:
        return [e for e in self.effects if isinstance(e, Audit)]

    @property
    def mails(self) -> list[Mail]:
        return [e for e in self.effects if isinstance(e, Mail)]


# --- mail texts' context (pure) --------------------------------------------------------------------------


def when(moment: datetime | str | None) -> str:
    """A moment as people read it in mail: '2026-11-26 07:13 UTC'."""
    if moment is None:
        return ""
    if isinstance(moment, str):
        moment = from_iso(moment)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def duration(span: timedelta) -> str:
    """48h -> '48 hours', 2d -> '2 days', 90m -> '90 minutes': as a person reads it."""
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0 and not (unit == "day" and seconds // size < 3):
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def context_for(config: Config, rules: Rules, request: Request | Mapping[str, Any]) -> dict[str, Any]:
    """What every template may say about a request."""
    row = request.as_dict() if isinstance(request, Request) else request
    name = parse_tld(row["cctld"])
    return {
        "request": {
            "id": row["id"],
            "cctld": name.ascii,
            "cctld_unicode": name.unicode,
            "cctld_display": name.display(),
            "requester": row["requester"],
            "name": row["requester_name"] or "",
            "words": row["claim"] or "",
            "state": row["state"],
            "created": when(row["created_at"]),
            "expires": when(row["expires_at"]),
            "decision": row["decision"] or "",
            "decided_by": row["decided_by"] or "",
            # Requesters and IANA contacts read "the Secretariat", not an operator's login name.
            "decided_by_public": ("the Secretariat" if row["decided_via"] == "cli" else row["decided_by"] or ""),
            "decided_at": when(row["decided_at"]),
            "decision_reason": row["decision_reason"] or "",
            "replacing": row.get("replacing") or "",
        },
        "bot": config.addresses.bot,
        "secretariat": config.addresses.secretariat,
        "list_address": config.mailman.list,
        "claim_max_chars": rules.requests.claim_max_chars,
        "delegates": {
            "allow": rules.approvers.delegates.allow,
            "window": duration(rules.approvers.delegates.objection_window),
        },
    }


def problem_text(resolution: Resolution) -> str:
    problem = resolution.problem
    return f"{problem.kind}: {problem.detail}" if problem is not None else ""


# --- the machine -----------------------------------------------------------------------------------


class _Plan:
    """An Outcome being built: the request and its approvers as they stand after each effect."""

    def __init__(self, request: Request, world: World) -> None:
        self.request = request
        self.world = world
        self.approvers = list(world.approvers)
        self.effects: list[Effect] = []
        self.escalated = False
        self.decided = False
        self._added = 0

    @property
    def now(self) -> datetime:
        return self.world.now

    @property
    def rules(self) -> Rules:
        return self.world.rules

    def set(self, **changes: Any) -> None:
        self.request = replace(self.request, **changes, updated_at=iso(self.now))
        self.effects.append(SetRequest(changes))

    def set_approver(self, approver_id: int, **changes: Any) -> None:
        self.approvers = [replace(a, **changes) if a.id == approver_id else a for a in self.approvers]
        self.effects.append(SetApprover(approver_id, changes))

    def close_live(self) -> None:
        self.approvers = [
            replace(a, state=ApproverState.CLOSED, next_reminder_at=None) if a.is_live else a for a in self.approvers
        ]
        self.effects.append(CloseLiveApprovers())

    def audit(self, action: str, *, actor: str = "bot", message_row: int | None = None, **details: Any) -> None:
        self.effects.append(Audit(action, details, actor, message_row))

    def mail(self, purpose: str, template: str, context: Mapping[str, Any], to: str, **options: Any) -> None:
        self.effects.append(Mail(purpose, template, context, (to,), **options))

    def live(self) -> list[Approver]:
        return [a for a in self.approvers if a.is_live]

    def context(self) -> dict[str, Any]:
        return context_for(self.world.config, self.rules, self.request)

    def language(self) -> Language:
        return self.rules.languages.for_cctld(self.request.cctld)

    def outcome(self) -> Outcome:
        return Outcome(self.request.state, tuple(self.effects), escalated=self.escalated, decided=self.decided)

    # --- asking ------------------------------------------------------------------------------------

    def eligible(self, record: IanaRecord, roles: Sequence[str]) -> list[Any]:
        """The IANA contacts of these roles who may decide this request (never the requester)."""
        return [a for a in record.approvers(tuple(roles)) if address_key(a.email) != self.request.requester_key]

    def ask_approvers(self, record: IanaRecord, roles: Sequence[str]) -> list[str]:
        """Mail each not-yet-asked approver of these roles their own approval request. Returns who was asked."""
        known = {a.email_key for a in self.approvers}
        asked = []
        for approver in self.eligible(record, roles):
            if address_key(approver.email) in known:
                continue
            self.ask(approver.email, approver.name, tuple(approver.roles), record)
            known.add(address_key(approver.email))
            asked.append(approver.email)
        return asked

    def ask(self, email: str, name: str, roles: tuple[str, ...], record: IanaRecord) -> None:
        reminders = self.rules.reminders
        self._added += 1
        key = self._added
        next_reminder = self.now + reminders.first_after if reminders.max > 0 else None
        self.effects.append(AddApprover(key, email, name, roles, next_reminder))
        self.approvers.append(
            Approver(
                id=-key,  # not in the store yet
                request_id=self.request.id,
                email=email,
                email_key=address_key(email),
                roles=",".join(roles),
                name=name,
                state=ApproverState.ASKED,
                asked_at=iso(self.now),
                expires_at=self.request.expires_at,
                used_at=None,
                reminders_sent=0,
                next_reminder_at=iso(next_reminder) if next_reminder is not None else None,
            )
        )
        self.audit("approver-asked", approver=email, roles=list(roles))
        self.approval_mail(ReplyToken(added=key), email, name, roles, record, reminder=0)

    def approval_mail(
        self,
        token: ReplyToken,
        email: str,
        name: str | None,
        roles: Sequence[str],
        record: IanaRecord | None,
        reminder: int,
    ) -> None:
        context = {
            **self.context(),
            "approver": {"email": email, "name": name or "", "roles": list(roles)},
            "organisation": record.organisation if record else "",
            "marker": REPLY_MARKER,
            "reminder": reminder,
        }
        self.mail(
            "approval-request" if not reminder else "approval-reminder",
            "approval_request.txt",
            context,
            email,
            reply_token=token,
            language=self.language(),
        )

    def secretariat_copy(self, asked: Sequence[str], note: str) -> None:
        """The Secretariat's copy of a request: everything the approvers see, but no token."""
        self.mail(
            "request-copy",
            "request_copy.txt",
            {**self.context(), "asked": list(asked), "note": note},
            self.world.config.addresses.secretariat,
        )

    def start_approval(self, resolution: Resolution) -> None:
        """IANA answered: keep the snapshot, ask the first approvers, tell the Secretariat."""
        record = resolution.record
        assert record is not None
        self.set(
            state=RequestState.PENDING,
            snapshot_id=resolution.snapshot_id,
            next_lookup_at=None,
            next_escalation_at=iso(self.now + self.rules.escalation.after),
        )
        self.audit(
            "state-changed", state=str(RequestState.PENDING), snapshot_id=resolution.snapshot_id, source=record.source
        )
        asked = self.ask_approvers(record, self.rules.approvers.ask_first)
        note = ""
        if not asked:
            note = (
                "The requester is the only IANA contact of this ccTLD who may approve: nobody was asked. "
                f"Decide with: secirbot approve {self.request.id}  or  secirbot deny {self.request.id} --reason ..."
            )
        self.secretariat_copy(asked, note)

    def escalate(self, why: str, record: IanaRecord | None) -> None:
        """Ask the roles not asked yet; when none are left, alert the Secretariat."""
        self.escalated = True
        stage = self.request.escalation_stage + 1
        asked = self.ask_approvers(record, self.rules.approvers.roles) if record else []
        self.set(
            escalation_stage=stage,
            next_escalation_at=iso(self.now + self.rules.escalation.after) if asked else None,
        )
        self.audit("escalated", stage=stage, why=why, asked=asked)
        if not asked:
            self.mail(
                "escalation",
                "escalation_secretariat.txt",
                {
                    **self.context(),
                    "why": why,
                    "approvers": [
                        {
                            "email": a.email,
                            "roles": a.roles,
                            "state": str(a.state),
                            "asked_at": a.asked_at,
                            "reminders_sent": a.reminders_sent,
                        }
                        for a in self.approvers
                    ],
                },
                self.world.config.addresses.secretariat,
            )

    def unreachable(self, approver: Approver, state: ApproverState, why: str) -> None:
        """An approver bounced or is away: record it and, if the rules say so, escalate at once."""
        self.set_approver(approver.id, state=state)
        self.audit(f"approver-{state}", approver=approver.email, why=why)
        if self.request.state is not RequestState.PENDING:
            return
        escalation = self.rules.escalation
        wanted = escalation.on_bounce if state is ApproverState.BOUNCED else escalation.on_auto_reply
        still_reachable = [a for a in self.live() if a.state is ApproverState.ASKED]
        if wanted and not still_reachable:
            self.escalate(f"{approver.email} {state}: {why}", self.world.record)

    def decide(self, event: Decide) -> None:
        """Record the decision, close every token, queue the Mailman action and the notices."""
        world, config = self.world, self.world.config
        decided_by, actor = event.decided_by, event.actor or event.decided_by
        self.decided = True
        # A delegated APPROVE still in its window is overtaken by this decision (a contact's own, the Secretariat's).
        self.effects.append(EndWaitingDelegations(DelegationState.SUPERSEDED, decided_by))
        approved = event.verdict is Verdict.APPROVE
        self.set(
            state=RequestState.APPROVED if approved else RequestState.DENIED,
            decision=event.verdict.value,
            decided_by=decided_by,
            decided_at=iso(self.now),
            decided_via=event.via,
            decision_reason=event.reason or None,
            mailman_status="queued" if approved else None,
            next_lookup_at=None,
            next_escalation_at=None,
        )
        if event.approver_id is not None:
            self.set_approver(event.approver_id, state=ApproverState.USED, used_at=iso(self.now))
        others = [a for a in self.live() if a.id != event.approver_id]
        self.close_live()
        self.audit(
            "request-decided",
            actor=actor,
            message_row=event.message_row,
            decision=event.verdict.value,
            via=event.via,
            rule=event.rule,
            checks=dict(event.checks),
            snapshot_id=self.request.snapshot_id,
            reason=event.reason,
            headers=event.headers,
        )
        context = self.context()
        request = self.request
        if approved:
            self.effects.append(Admit(actor))
            self.effects.append(Subscribe())
            replaced = world.replaced
            if request.replacing and replaced is not None and replaced.state is MemberState.MEMBER:
                # The approval was asked and given for this replacement: the one replaced leaves the list.
                self.effects.append(
                    RemoveMember(
                        replaced,
                        actor=actor,
                        reason=f"replaced by {request.requester} (request #{request.id})",
                        asked_by=f"The approved request #{request.id}",
                        cause_message=event.message_row,
                    )
                )
            self.mail(
                "decision-requester",
                "approved_requester.txt",
                {**context, "dialect": config.mailman.dialect},
                request.requester,
            )
        else:
            show_reason = event.reason if self.rules.decisions.tell_requester_deny_reason else ""
            self.mail(
                "decision-requester", "denied_requester.txt", {**context, "reason": show_reason}, request.requester
            )
        self.mail(
            "decision-secretariat",
            "decision_secretariat.txt",
            {**context, "via": event.via, "checks": dict(event.checks), "rule": event.rule, "snapshot": world.snapshot},
            config.addresses.secretariat,
        )
        decider = world.approver(event.approver_id)
        if event.approver_id is not None:
            assert decider is not None  # the approver row of this very decision
            if same_address(decided_by, decider.email):
                recorded_for = {"email": decider.email, "name": decider.name}
            else:
                # Answered on the contact's behalf (delegation.py): "your answer is recorded" goes to the person
                # who answered; the contact hears of the decision like the other contacts.
                recorded_for = {"email": decided_by, "name": ""}
                others.append(decider)
            self.mail(
                "decision-recorded",
                "decision_recorded.txt",
                {**context, "approver": recorded_for},
                str(recorded_for["email"]),
                language=self.language(),
            )
        for other in others:
            self.mail(
                "decision-approvers",
                "decision_approvers.txt",
                {**context, "approver": {"email": other.email, "name": other.name}},
                other.email,
                language=self.language(),
            )

    def delegation_mails(self, template: str, purpose: str, extra: Mapping[str, Any], delegate: str) -> None:
        """The same notice to every contact asked (each with a fresh token: OBJECT, APPROVE or DENY answer
        it), to the delegate and to the Secretariat (no token)."""
        context = {**self.context(), **extra}
        for approver in self.live():
            self.mail(
                purpose,
                template,
                {**context, "approver": {"email": approver.email, "name": approver.name or ""}},
                approver.email,
                reply_token=ReplyToken(approver_id=approver.id),
                language=self.language(),
            )
        # The delegate and the Secretariat: English, like every mail that is not to a ccTLD's IANA contact.
        for address in (delegate, self.world.config.addresses.secretariat):
            self.mail(purpose, template, {**context, "approver": None}, address)


# --- one handler per (state, event) pair ---------------------------------------------------------------


def _looked(plan: _Plan, event: Looked) -> None:
    resolution, now, rules = event.resolution, plan.now, plan.rules
    if event.first:
        plan.set(lookup_attempts=1, snapshot_id=resolution.snapshot_id)
        if resolution.record is not None:
            plan.start_approval(resolution)
        else:
            plan.set(next_lookup_at=iso(now + rules.lookups.retry_every))
            plan.audit("lookup-failed", snapshot_id=resolution.snapshot_id, problem=problem_text(resolution))
            plan.secretariat_copy([], problem_text(resolution))
        # The requester's own reply address: a WITHDRAW sent to it closes the request.
        plan.mail(
            "request-received",
            "request_received.txt",
            {**plan.context(), "delayed": resolution.record is None, "asked": len(plan.approvers)},
            plan.request.requester,
            in_reply_to=plan.world.source_message_id,
            cause_message=plan.request.source_message,
            auto="auto-replied",
            reply_token=ReplyToken(requester=True),
        )
        return
    before = plan.request
    attempts = before.lookup_attempts + 1
    if resolution.record is not None:
        plan.set(lookup_attempts=attempts)
        plan.start_approval(resolution)
        return
    plan.set(
        lookup_attempts=attempts,
        snapshot_id=resolution.snapshot_id,
        next_lookup_at=iso(now + rules.lookups.retry_every),
    )
    plan.audit("lookup-failed", snapshot_id=resolution.snapshot_id, problem=problem_text(resolution), attempts=attempts)
    waited = now - from_iso(plan.request.created_at)
    if waited >= rules.lookups.tell_secretariat_after and not plan.world.lookup_alerted:
        plan.audit("lookup-alert")
        plan.mail(
            "lookup-failing",
            "lookup_failing.txt",
            {
                # as the request was read before this retry: its old snapshot
                **context_for(plan.world.config, rules, before),
                "problem": problem_text(resolution),
                "attempts": attempts,
                "waited_hours": int(waited.total_seconds() // 3600),
            },
            plan.world.config.addresses.secretariat,
        )


def _step_failed(plan: _Plan, event: StepFailed) -> None:
    retry = plan.rules.lookups.retry_every
    before = plan.request
    plan.set(next_lookup_at=iso(plan.now + retry))
    plan.audit("step-failed", reason=event.reason[:1000])
    if plan.world.stuck_reported:
        return
    hours = retry.total_seconds() / 3600
    plan.mail(
        "request-stuck",
        "request_stuck.txt",
        {
            **context_for(plan.world.config, plan.rules, before),
            "reason": event.reason[:500],
            "retry": f"{hours:g} hour{'s' if hours != 1 else ''}",
        },
        plan.world.config.addresses.secretariat,
        fallible=True,
    )


def _decide(plan: _Plan, event: Decide) -> None:
    plan.decide(event)


def _delegated_approve(plan: _Plan, event: DelegatedApprove) -> None:
    """A qualifying delegate answered APPROVE: provisional until the objection window ends."""
    approver = plan.world.approver(event.approver_id)
    assert approver is not None
    takes_effect = plan.now + plan.rules.approvers.delegates.objection_window
    plan.effects.append(
        RecordDelegation(
            approver.id,
            event.delegate,
            "APPROVE",
            DelegationState.WAITING,
            event.checks,
            takes_effect,
            event.message_row,
        )
    )
    plan.audit(
        "delegated-answer",
        actor=event.delegate,
        message_row=event.message_row,
        decision="APPROVE",
        delegated_by=event.delegate,
        delegated_for=approver.email,
        takes_effect_at=iso(takes_effect),
        checks=dict(event.checks),
    )
    plan.delegation_mails(
        "delegated_notice.txt",
        "delegated-notice",
        {"delegate": event.delegate, "contact": approver.email, "takes_effect": when(takes_effect)},
        event.delegate,
    )


def _delegated_deny(plan: _Plan, event: DelegatedDeny) -> None:
    """A qualifying delegate answered DENY: it takes effect at once; the Secretariat is told who gave it."""
    approver = plan.world.approver(event.approver_id)
    assert approver is not None
    plan.effects.append(
        RecordDelegation(
            approver.id,
            event.delegate,
            "DENY",
            DelegationState.EFFECTIVE,
            event.checks,
            plan.now,
            event.message_row,
        )
    )
    plan.decide(
        Decide(
            Verdict.DENY,
            decided_by=event.delegate,
            via=f"delegated for {approver.email}",
            reason=event.reason,
            approver_id=approver.id,
            message_row=event.message_row,
            checks=event.checks,
            rule="delegated",
            headers=event.headers,
            actor=event.delegate,
        )
    )


def _delegation_objected(plan: _Plan, event: DelegationObjected) -> None:
    """OBJECT in the window: the delegated APPROVE is cancelled, the request stays open, everyone is told."""
    waiting = event.waiting
    plan.effects.append(EndDelegation(waiting.id, DelegationState.OBJECTED, event.objector))
    contact = plan.world.approver(waiting.approver_id)
    plan.audit(
        "delegation-objected",
        actor=event.objector,
        message_row=event.message_row,
        delegated_by=waiting.delegate,
        delegated_for=contact.email if contact else "",
        objector=event.objector,
    )
    plan.delegation_mails(
        "delegation_objected.txt",
        "delegation-objected",
        {"delegate": waiting.delegate, "contact": contact.email if contact else "", "objector": event.objector},
        waiting.delegate,
    )


def _delegation_due(plan: _Plan, event: DelegationDue) -> None:
    """The objection window of a delegated APPROVE ended without an OBJECT: it decides the request."""
    waiting = event.waiting
    contact = plan.world.approver(waiting.approver_id)
    plan.effects.append(EndDelegation(waiting.id, DelegationState.EFFECTIVE, "objection window"))
    plan.decide(
        Decide(
            Verdict.APPROVE,
            decided_by=waiting.delegate,
            via=f"delegated for {contact.email if contact else '?'}",
            reason="",
            approver_id=waiting.approver_id,
            message_row=waiting.message_row,
            checks={**{k: str(v) for k, v in waiting.authentication.items()}, "objection_window": "ended, no OBJECT"},
            rule="delegated-after-window",
            actor="bot",
        )
    )


def _delegation_superseded(plan: _Plan, event: DelegationDue) -> None:
    # The request was closed in the window by another answer: the waiting delegation decides nothing.
    plan.effects.append(EndDelegation(event.waiting.id, DelegationState.SUPERSEDED, "bot"))


def _withdraw(plan: _Plan, event: Withdraw) -> None:
    """The requester withdrew an open request: close it and every approver token; tell the approvers who
    were asked, the Secretariat, and the requester."""
    asked = plan.live()
    plan.set(state=RequestState.WITHDRAWN, next_lookup_at=None, next_escalation_at=None)
    plan.close_live()
    plan.audit(
        "request-withdrawn",
        actor=plan.request.requester,
        message_row=event.message_row,
        checks=dict(event.checks),
        told=[a.email for a in asked],
    )
    context = plan.context()
    now, secretariat = when(plan.now), plan.world.config.addresses.secretariat
    plan.mail("withdrawn-requester", "withdrawn_requester.txt", context, plan.request.requester)
    plan.mail(
        "withdrawn-secretariat",
        "withdrawn_notice.txt",
        {**context, "approver": None, "asked": [a.email for a in asked], "withdrawn_at": now},
        secretariat,
    )
    for other in asked:
        plan.mail(
            "withdrawn-approvers",
            "withdrawn_notice.txt",
            {**context, "approver": {"email": other.email, "name": other.name}, "asked": [], "withdrawn_at": now},
            other.email,
            language=plan.language(),
        )


def _not_mine(plan: _Plan, event: NotMine) -> None:
    """An approver answered NOT MINE: record it on their row (no longer live, no more reminders), thank
    them, and when no contact who may decide is left, escalate at once."""
    approver = plan.world.approver(event.approver_id)
    assert approver is not None
    plan.set_approver(approver.id, state=ApproverState.NOT_MINE, used_at=iso(plan.now), next_reminder_at=None)
    left = plan.live()
    plan.audit(
        "approver-not-mine",
        actor=approver.email,
        message_row=event.message_row,
        approver=approver.email,
        rule=event.rule,
        checks=dict(event.checks),
        left=[a.email for a in left],
    )
    plan.mail(
        "not-mine-recorded",
        "not_mine_recorded.txt",
        {
            **plan.context(),
            "approver": {"email": approver.email, "name": approver.name or ""},
            "recorded_at": when(plan.now),
        },
        approver.email,
        in_reply_to=event.in_reply_to,
        cause_message=event.message_row,
        auto="auto-replied",
        language=plan.language(),
    )
    if left:
        return
    # Bounced and away contacts are still live (they may answer): only when nobody is, escalate now.
    said = [a.email for a in plan.approvers if a.state is ApproverState.NOT_MINE]
    plan.escalate(f"every contact asked answered NOT MINE ({', '.join(said)})", plan.world.record)


def _unreachable(plan: _Plan, event: Unreachable) -> None:
    approver = plan.world.approver(event.approver_id)
    assert approver is not None
    plan.unreachable(approver, event.state, event.why)


def _escalation_due(plan: _Plan, event: EscalationDue) -> None:
    plan.escalate(event.why, plan.world.record)


def _reminder_due(plan: _Plan, event: ReminderDue) -> None:
    """Send an approver who has not answered the request again, with a fresh token (the old stays valid)."""
    approver = plan.world.approver(event.approver_id)
    assert approver is not None
    sent = approver.reminders_sent + 1
    more = sent < plan.rules.reminders.max
    plan.set_approver(
        approver.id,
        reminders_sent=sent,
        next_reminder_at=iso(plan.now + plan.rules.reminders.every) if more else None,
    )
    plan.audit("approver-reminded", approver=approver.email, reminder=sent)
    plan.approval_mail(
        ReplyToken(approver_id=approver.id),
        approver.email,
        approver.name,
        approver.role_list,
        plan.world.record,
        reminder=sent,
    )


def _expire(plan: _Plan, event: Expire) -> None:
    plan.set(state=RequestState.EXPIRED, next_lookup_at=None, next_escalation_at=None)
    plan.close_live()
    plan.audit("state-changed", state=str(RequestState.EXPIRED))
    context = plan.context()
    plan.mail("expired-requester", "expired_requester.txt", context, plan.request.requester)
    plan.mail(
        "expired-secretariat",
        "expired_secretariat.txt",
        {
            **context,
            "approvers": [
                {"email": a.email, "roles": a.roles, "state": str(a.state), "reminders_sent": a.reminders_sent}
                for a in plan.approvers
            ],
        },
        plan.world.config.addresses.secretariat,
    )


def _contacts_changed(plan: _Plan, event: ContactsChanged) -> None:
    """Re-send the request to new contacts, close the tokens of contacts no longer listed. Changes nothing
    (an empty Outcome) when neither happened."""
    record = event.resolution.record
    assert record is not None
    rules = plan.rules
    listed = {address_key(a.email) for a in record.approvers(tuple(rules.approvers.roles))}
    gone = [a for a in plan.live() if a.email_key not in listed]
    known = {a.email_key for a in plan.approvers}
    # A request that already escalated asks every approving role, not only the first ones.
    roles = rules.approvers.roles if plan.request.escalation_stage else rules.approvers.ask_first
    new = [a for a in plan.eligible(record, roles) if address_key(a.email) not in known]
    if not gone and not new:
        return
    for approver in gone:
        plan.set_approver(approver.id, state=ApproverState.CLOSED, next_reminder_at=None)
    plan.set(snapshot_id=event.resolution.snapshot_id)
    asked = plan.ask_approvers(record, roles)
    if not asked and not plan.live():
        plan.escalate("the IANA contacts changed and none of the new ones was asked yet", record)
    if gone or asked:
        plan.audit(
            "contacts-changed",
            cctld=plan.request.cctld,
            snapshot_id=event.resolution.snapshot_id,
            removed=[a.email for a in gone],
            asked=asked,
        )


# Mailman's answer to a subscription: the request's mailman_status and the audit entry that records it.
_MAILMAN_ANSWERS = {
    201: ("member", "mailman-member"),
    202: ("pending", "mailman-pending"),
    409: ("conflict", "mailman-conflict"),
}


def _mailman_answered(plan: _Plan, event: MailmanAnswered) -> None:
    status, action = _MAILMAN_ANSWERS.get(event.http or 0, ("failed", "mailman-failed"))
    details: dict[str, Any] = {"outbox_id": event.outbox_id}
    if event.http is None:
        details["error"] = event.error
    else:
        details["http"] = event.http
    if event.http == 409:
        details["said"] = event.said
    plan.set(mailman_status=status)
    plan.audit(action, **details)
    if event.http == 409:  # already a member, or a subscription pending: a person looks
        plan.mail(
            "mailman-conflict",
            "mailman_conflict.txt",
            {
                "address": event.address,
                "request_id": plan.request.id,
                "said": event.said,
                "list_address": plan.world.config.mailman.list,
            },
            plan.world.config.addresses.secretariat,
        )


Handler = Callable[[_Plan, Any], None]
_R, _P = RequestState.RESOLVING, RequestState.PENDING
_CLOSED = (RequestState.APPROVED, RequestState.DENIED, RequestState.EXPIRED, RequestState.WITHDRAWN)

# Every (state, event) pair that changes something. Anything else is refused (audited, nothing changed).
TABLE: dict[tuple[RequestState, type], Handler] = {
    (_R, Looked): _looked,
    (_R, StepFailed): _step_failed,
    (_R, Decide): _decide,  # the Secretariat, with --force
    (_R, Withdraw): _withdraw,
    (_R, Expire): _expire,
    (_P, Decide): _decide,
    (_P, DelegatedApprove): _delegated_approve,
    (_P, DelegatedDeny): _delegated_deny,
    (_P, DelegationObjected): _delegation_objected,
    (_P, DelegationDue): _delegation_due,
    (_P, Withdraw): _withdraw,
    (_P, NotMine): _not_mine,
    (_P, Unreachable): _unreachable,
    (_P, EscalationDue): _escalation_due,
    (_P, ReminderDue): _reminder_due,
    (_P, Expire): _expire,
    (_P, ContactsChanged): _contacts_changed,
    **{(state, DelegationDue): _delegation_superseded for state in _CLOSED},
    (RequestState.APPROVED, MailmanAnswered): _mailman_answered,
}


def transition(request: Request, event: Event, world: World) -> Outcome:
    """What `event` does to `request`: its new state and every effect, in order. Pure."""
    handler = TABLE.get((request.state, type(event)))
    if handler is None:
        why = f"{type(event).__name__} does not apply to a request that is {request.state}"
        refusal = Audit("transition-refused", {"state": str(request.state), "event": type(event).__name__, "why": why})
        return Outcome(request.state, (refusal,), refused=why)
    plan = _Plan(request, world)
    handler(plan, event)
    return plan.outcome()
