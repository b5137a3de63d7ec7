"""One inbound message, start to end: parse, dedupe, classify, route to its handler, record.

Each handler has two halves. `prepare` may read the store and do the slow I/O a decision needs (the IANA
lookup of a new request, DKIM key lookups for a reply) but writes nothing. `commit` runs inside the one
transaction that records the message, its classification, every state change and every mail it causes.
Only after that commit does the caller file the message on the IMAP server.

Two kinds of error are caught here, as in Zulip's gateway: the sender's (unparseable mail: quarantined in
Failed, logged at info) and ours (any other exception: quarantined in Failed with the reason, logged with
the traceback). A store that cannot record even that raises, and the message stays in the inbox.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from . import confirmations, delegation, intake, mailman, membership, roster, tokens, workflow
from .authenticity import check_sender
from .classify import Classification, Kind, classify, removal_target
from .compose import ENGLISH, Language
from .iana.names import parse_tld
from .iana.resolver import approvers_of
from .ledger import OPEN_STATES, Approver, Request
from .message import (
    InboundMail,
    UnparseableMail,
    address_key,
    is_plain_address,
    normalise_message_id,
    parse_mail,
    same_address,
)
from .newtext import new_text, read_new_text
from .replies import REQUESTER_WORDS, Verdict, read_decision, reads_as_decision
from .store import StoreError, iso, rowid

if TYPE_CHECKING:
    from .bot import Bot

log = logging.getLogger(__name__)

FOLDER_PROCESSED = "processed"
FOLDER_FAILED = "failed"
# Full raw bytes are kept for the kinds whose content can matter later (audit of a decision); for the
# rest the headers suffice and a flood of junk does not grow the store by its bodies.
KEEP_WHOLE = (Kind.REQUEST, Kind.REPLY, Kind.MAILMAN, Kind.MEMBERSHIP)


@dataclass(frozen=True)
class Origin:
    folder: str
    uidvalidity: int
    uid: int


@dataclass
class Outcome:
    """What a handler did: the detail recorded on the message row and the request it concerns."""

    detail: str
    request_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Incoming:
    mail: InboundMail
    cls: Classification
    plan: Any = None
    row: int = 0


# --- the entry point -----------------------------------------------------------------------------


def process(bot: Bot, origin: Origin, raw: bytes, headers_only: bool = False) -> str:
    """Process one fetched message exactly once. Returns where to file it: 'processed' or 'failed'."""
    known = bot.store.one(
        "SELECT outcome FROM messages WHERE folder = ? AND uidvalidity = ? AND uid = ?",
        (origin.folder, origin.uidvalidity, origin.uid),
    )
    if known is not None:  # committed before a crash or a lost connection kept us from filing it
        return FOLDER_FAILED if known["outcome"] == "failed" else FOLDER_PROCESSED
    try:
        mail = parse_mail(raw)
    except UnparseableMail as exc:
        log.info("message uid=%s quarantined: %s", origin.uid, exc)
        _record_failure(bot, origin, raw, None, "unparseable", str(exc))
        return FOLDER_FAILED
    if headers_only:
        _record_failure(
            bot,
            origin,
            raw,
            mail,
            "too-large",
            f"larger than imap.max_message_size ({bot.config.imap.max_message_size} bytes)",
            tell_secretariat=True,
        )
        return FOLDER_FAILED
    duplicate = _find_duplicate(bot, mail)
    if duplicate is not None:
        with bot.store.transaction():
            row = _insert(bot, origin, mail, raw, "duplicate", f"of message {duplicate}", "duplicate", None)
            bot.store.audit("message-duplicate", at=bot.now(), message_row=row, of=duplicate)
        return FOLDER_PROCESSED
    cls = classify(mail, bot_address=bot.bot_address, list_address=bot.config.mailman.list)
    handler = HANDLERS[cls.kind]
    incoming = Incoming(mail, cls)
    try:
        incoming.plan = handler.prepare(bot, incoming)
        with bot.store.transaction():
            incoming.row = _insert(bot, origin, mail, raw, cls.kind.value, cls.detail, "processed", None)
            outcome = handler.commit(bot, incoming)
            bot.store.execute(
                "UPDATE messages SET detail = ?, request_id = ? WHERE id = ?",
                (outcome.detail, outcome.request_id, incoming.row),
            )
            bot.store.audit(
                "message-processed",
                at=bot.now(),
                message_row=incoming.row,
                request_id=outcome.request_id,
                kind=cls.kind.value,
                detail=outcome.detail,
                signals=list(cls.signals),
                **outcome.extra,
            )
    except Exception as exc:  # ours, not the sender's: quarantine with the reason, keep the loop alive
        log.error("message uid=%s from %s failed: %s\n%s", origin.uid, mail.from_addr, exc, traceback.format_exc())
        _record_failure(
            bot,
            origin,
            raw,
            mail,
            cls.kind.value,
            f"internal error: {type(exc).__name__}: {exc}",
            tell_secretariat=cls.kind is not Kind.AUTOMATED,
        )
        return FOLDER_FAILED
    log.info(
        "message uid=%s from %s: %s/%s -> %s", origin.uid, mail.from_addr, cls.kind.value, cls.detail, outcome.detail
    )
    return FOLDER_PROCESSED


def _insert(
    bot: Bot,
    origin: Origin,
    mail: InboundMail | None,
    raw: bytes,
    kind: str,
    detail: str,
    outcome: str,
    reason: str | None,
) -> int:
    keep = raw if mail is None or kind in {k.value for k in KEEP_WHOLE} else mail.raw_headers()
    cur = bot.store.execute(
        "INSERT INTO messages (folder, uidvalidity, uid, message_id, body_hash, raw_hash, size, processed_at,"
        " from_addr, subject, kind, detail, outcome, reason, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            origin.folder,
            origin.uidvalidity,
            origin.uid,
            mail.message_id if mail else None,
            mail.body_hash if mail else _hash(raw),
            _hash(raw),
            len(raw),
            iso(bot.now()),
            mail.from_addr if mail else None,
            mail.subject[:500] if mail else None,
            kind,
            detail,
            outcome,
            reason,
            keep,
        ),
    )
    return rowid(cur)


def _hash(raw: bytes) -> str:
    return hashlib.sha256(raw.lstrip(b"\r\n")).hexdigest()


def _record_failure(
    bot: Bot,
    origin: Origin,
    raw: bytes,
    mail: InboundMail | None,
    kind: str,
    reason: str,
    tell_secretariat: bool = False,
) -> None:
    """Quarantine: the record and the reason; a person's mail we could not handle is also reported, so
    that an approval or a request never disappears silently into the Failed folder. Recording cannot fail
    on the mail's content: if even the notice cannot be composed, the failure is recorded without it.
    Only the store itself failing raises (the message then stays in the inbox)."""
    with bot.store.transaction():
        row = _insert(bot, origin, mail, raw, kind, "quarantined", "failed", reason)
        bot.store.audit("message-failed", at=bot.now(), message_row=row, reason=reason)
        if tell_secretariat:
            _tell_secretariat_of_failure(bot, row, mail, reason)


def _tell_secretariat_of_failure(bot: Bot, row: int, mail: InboundMail | None, reason: str) -> None:
    context = {
        **_base_context(bot),
        "sender": "(unreadable)",
        "subject": "(unreadable)",
        "message_id": "(none)",
        "reason": reason[:500],
        "row": row,
        "folder": bot.config.imap.failed_folder,
    }
    if mail is not None:
        context.update(
            sender=mail.from_addr or "(none)", subject=mail.subject[:200], message_id=mail.message_id or "(none)"
        )
    try:
        bot.outbox.queue_mail(
            purpose="message-quarantined",
            template="message_quarantined.txt",
            context=context,
            to=[bot.secretariat],
            cause_message=row,
        )
    except (sqlite3.Error, StoreError):
        raise
    except Exception as exc:  # a template or composition problem: the record stands without the notice
        log.error("message row %s: the Secretariat's notice could not be composed: %s", row, exc)
        bot.store.audit("notice-not-composed", at=bot.now(), message_row=row, error=f"{type(exc).__name__}: {exc}")


def last_resort(bot: Bot, origin: Origin, raw: bytes, exc: BaseException) -> str:
    """What the drain loop does when processing one message raised anyway: record it as failed with the
    reason, tell the Secretariat, and file it in Failed, so that one message can never block the mailbox.
    Store errors are not handled here: the caller lets them stop the bot with the message in the inbox."""
    log.error(
        "message uid=%s could not be processed: %s\n%s", origin.uid, exc, "".join(traceback.format_exception(exc))
    )
    reason = f"internal error: {type(exc).__name__}: {exc}"[:1000]
    known = bot.store.one(
        "SELECT outcome FROM messages WHERE folder = ? AND uidvalidity = ? AND uid = ?",
        (origin.folder, origin.uidvalidity, origin.uid),
    )
    if known is not None:  # it was recorded before the error: file it by that record
        return FOLDER_FAILED if known["outcome"] == "failed" else FOLDER_PROCESSED
    with bot.store.transaction():
        cur = bot.store.execute(
            "INSERT INTO messages (folder, uidvalidity, uid, message_id, body_hash, raw_hash, size, processed_at,"
            " kind, detail, outcome, reason, raw) VALUES (?, ?, ?, NULL, ?, ?, ?, ?, 'unknown', 'quarantined',"
            " 'failed', ?, ?)",
            (
                origin.folder,
                origin.uidvalidity,
                origin.uid,
                _hash(raw),
                _hash(raw),
                len(raw),
                iso(bot.now()),
                reason,
                raw[:65536],
            ),
        )
        row = rowid(cur)
        bot.store.audit("message-failed", at=bot.now(), message_row=row, reason=reason, last_resort=True)
        _tell_secretariat_of_failure(bot, row, None, reason)
    return FOLDER_FAILED


def _find_duplicate(bot: Bot, mail: InboundMail) -> int | None:
    """The same message delivered twice (or re-appended after a UIDVALIDITY change): same Message-ID and
    same body. A Message-ID alone could be forged to shadow a genuine reply, so the body must match too."""
    if mail.message_id:
        row = bot.store.one(
            "SELECT id FROM messages WHERE message_id = ? AND body_hash = ? AND outcome != 'failed'",
            (mail.message_id, mail.body_hash),
        )
    else:  # nothing names it: only the very same bytes (re-numbered after a UIDVALIDITY change) match
        row = bot.store.one("SELECT id FROM messages WHERE raw_hash = ? AND outcome != 'failed'", (_hash(mail.raw),))
    return int(row["id"]) if row else None


# --- helpers shared by handlers --------------------------------------------------------------------


def _limited_reply(
    bot: Bot,
    incoming: Incoming,
    *,
    purpose: str,
    template: str,
    context: dict[str, Any],
    request_id: int | None = None,
    reply_to: str | None = None,
    language: Language = ENGLISH,
) -> bool:
    """Answer a human at most `replies_per_sender_per_day` times per purpose. True if queued."""
    sender = incoming.mail.from_addr
    if not sender:
        return False
    since = bot.now() - timedelta(days=1)
    silenced = _silenced(bot, incoming, request_id=request_id, purpose=purpose, to=sender)
    limit = bot.rules.requests.replies_per_sender_per_day
    if silenced is None and bot.outbox.recent(sender, [purpose], since) >= limit:
        silenced = "replies_per_sender_per_day"
    if silenced is None and _over_reply_budget(bot, incoming):
        silenced = "replies_per_hour"
    if silenced:
        bot.store.audit(
            "reply-suppressed",
            at=bot.now(),
            message_row=incoming.row,
            request_id=request_id,
            purpose=purpose,
            to=sender,
            why=silenced,
        )
        return False
    bot.outbox.queue_mail(
        purpose=purpose,
        template=template,
        context=context,
        to=[sender],
        in_reply_to=incoming.mail.message_id,
        request_id=request_id,
        cause_message=incoming.row,
        auto="auto-replied",
        reply_to=reply_to,
        language=language,
    )
    return True


_MACHINE_RETURN_PATH = re.compile(r"^<?(?:|mailer-daemon(?:@.*)?|postmaster(?:@.*)?)>?$", re.IGNORECASE)
MACHINE_MEMORY = timedelta(days=30)


def _silenced(bot: Bot, incoming: Incoming, *, request_id: int | None, purpose: str, to: str) -> str | None:
    """Why a help, refusal or clarification must not be sent, or None. When unsure, stay silent: never to a
    null or MAILER-DAEMON/postmaster Return-Path, never to an address that bounced or auto-replied in the
    last 30 days (an auto-responder answers back: a mail loop), at most once per address and request."""
    return_path = incoming.mail.message.get("Return-Path")
    if return_path is not None and _MACHINE_RETURN_PATH.match(str(return_path).strip()):
        return f"Return-Path {str(return_path).strip()[:80]}"
    since = iso(bot.now() - MACHINE_MEMORY)
    machine = bot.store.one(
        "SELECT 1 FROM messages WHERE from_addr = ? COLLATE NOCASE AND processed_at >= ?"
        " AND kind = 'automated'"
        " AND detail IN ('auto-reply', 'away-noted', 'bounce', 'bounce-noted', 'delay-notice',"
        " 'delivery-report', 'feedback-report', 'notification') LIMIT 1",
        (to, since),
    )
    if machine is not None:
        return "auto-replied or bounced in the last 30 days"
    if bot.ledger.bounced_since(to, since):
        return "bounced in the last 30 days"
    if request_id is not None:
        sent = bot.store.one(
            "SELECT 1 FROM outbox WHERE request_id = ? AND purpose = ? AND to_key = ? LIMIT 1",
            (request_id, purpose, to.lower()),
        )
        if sent is not None:
            return "already answered once for this request"
    return None


# What a stranger can make the bot send (help, refusals, "not accepted"): bounded in total, not only per
# address, since every forged From would otherwise get its own answer.
BACKSCATTER_PURPOSES = ("help", "request-problem", "reply-not-accepted", "already-decided", "withdraw-unclear")


def _over_reply_budget(bot: Bot, incoming: Incoming) -> bool:
    since = iso(bot.now() - timedelta(hours=1))
    marks = ",".join("?" * len(BACKSCATTER_PURPOSES))
    sent = bot.store.count(
        f"SELECT COUNT(*) FROM outbox WHERE created_at >= ? AND (purpose IN ({marks}) OR purpose LIKE 'refused-%')",
        (since, *BACKSCATTER_PURPOSES),
    )
    if sent < bot.rules.requests.replies_per_hour:
        return False
    told = bot.store.one("SELECT 1 FROM outbox WHERE purpose = 'reply-budget' AND created_at >= ?", (since,))
    if told is None:
        bot.store.audit(
            "reply-budget-exhausted", at=bot.now(), message_row=incoming.row, limit=bot.rules.requests.replies_per_hour
        )
        bot.outbox.queue_mail(
            purpose="reply-budget",
            template="reply_budget.txt",
            context={**_base_context(bot), "limit": bot.rules.requests.replies_per_hour},
            to=[bot.secretariat],
        )
    return True


def _watch_token_guessing(bot: Bot, incoming: Incoming) -> None:
    """160-bit tokens cannot be guessed, but someone trying is worth knowing: past
    `unknown_tokens_per_hour` replies to tokens we never issued, the Secretariat is alerted, once an hour.
    (The answers themselves are bounded like any backscatter.)"""
    since = iso(bot.now() - timedelta(hours=1))
    count = 1 + bot.store.count(  # this message's row gets its detail after this handler returns
        "SELECT COUNT(*) FROM messages WHERE processed_at >= ? AND kind = 'reply'"
        " AND detail IN ('rejected:token-unknown', 'rejected:token-ambiguous')",
        (since,),
    )
    if count < bot.rules.requests.unknown_tokens_per_hour:
        return
    if bot.store.one("SELECT 1 FROM outbox WHERE purpose = 'token-guessing' AND created_at >= ?", (since,)):
        return
    bot.store.audit("token-guessing", at=bot.now(), message_row=incoming.row, count=count)
    bot.outbox.queue_mail(
        purpose="token-guessing",
        template="token_guessing.txt",
        context={**_base_context(bot), "count": count, "limit": bot.rules.requests.unknown_tokens_per_hour},
        to=[bot.secretariat],
    )


def _base_context(bot: Bot) -> dict[str, Any]:
    return {"bot": bot.bot_address, "secretariat": bot.secretariat, "list_address": bot.config.mailman.list}


# --- handlers ------------------------------------------------------------------------------------


class RequestHandler:
    """A new request: read the claim, check the rules, resolve IANA afresh, open it or say why not."""

    @staticmethod
    def prepare(bot: Bot, incoming: Incoming) -> Any:
        mail = incoming.mail
        if not is_plain_address(mail.from_addr or ""):
            # IANA contacts must read exactly who would be subscribed: '"tech"@sidn.nl' or 'tech@sidn.nl.'
            # would be compared, shown and subscribed in forms that can mislead.
            return intake.ClaimProblem("address-form", (mail.from_addr or "",))
        claim = intake.read_claim(mail, new_text(mail), bot.rules.requests.claim_max_chars)
        if isinstance(claim, intake.ClaimProblem):
            return claim
        facts = gather_facts(bot, mail.from_addr or "", claim)
        refusal = intake.check(claim, bot.rules, facts)
        if refusal is not None:
            return (claim, (refusal, facts))
        # IANA is asked afterwards, off the message path (schedule.resolve_due_lookups): a slow or
        # hanging IANA never delays replies or other mail.
        return (claim, None)

    @staticmethod
    def commit(bot: Bot, incoming: Incoming) -> Outcome:
        plan = incoming.plan
        context = _base_context(bot)
        if isinstance(plan, intake.ClaimProblem):
            if plan.reason == "address-form" and not (incoming.mail.from_addr or "").isascii():
                return Outcome("request-problem:address-form")  # no mail can be sent to it without SMTPUTF8
            _limited_reply(
                bot,
                incoming,
                purpose="request-problem",
                template="request_problem.txt",
                context={**context, "reason": plan.reason, "names": list(plan.names)},
            )
            return Outcome(f"request-problem:{plan.reason}", extra={"names": list(plan.names)})
        claim, second = plan
        if isinstance(second, tuple):  # refused: (the rule, the facts it was judged on)
            second, facts = second
            open_id = facts.open_request_id
            _limited_reply(
                bot,
                incoming,
                purpose=f"refused-{second.rule}",
                template="request_refused.txt",
                context={
                    **context,
                    "rule": second.rule,
                    "detail": second.detail,
                    "cctld": claim.cctld.unicode,
                    "cctld_display": claim.cctld.display(),
                    "open_request_id": open_id,
                    "seats": bot.rules.requests.seats_per_cctld,
                },
            )
            bot.store.audit(
                "request-refused",
                at=bot.now(),
                message_row=incoming.row,
                rule=second.rule,
                detail=second.detail,
                cctld=claim.cctld.ascii,
                requester=incoming.mail.from_addr,
            )
            return Outcome(f"refused:{second.rule}")
        request_id = workflow.open_request(
            bot,
            requester=incoming.mail.from_addr or "",
            claim=claim,
            message_row=incoming.row,
            in_reply_to=incoming.mail.message_id,
        )
        return Outcome("request-opened", request_id)


def gather_facts(bot: Bot, requester: str, claim: intake.Claim) -> intake.Facts:
    store, cctld = bot.store, claim.cctld.ascii
    since = iso(intake.hour_window(bot.now()))
    ledger = bot.ledger
    open_rows = ledger.open_of_requester(requester)
    open_row = open_rows[0] if open_rows else None
    member = roster.on_list(store, requester)
    seats = roster.seats_taken(store, cctld) + ledger.open_count(cctld)
    replacing = problem = None
    if claim.replacing:
        replaced = roster.on_list(store, claim.replacing)
        if replaced is None or replaced.state is not roster.MemberState.MEMBER:
            problem = f"{claim.replacing} is not a member of the list"
        elif replaced.cctld != cctld:
            problem = f"{claim.replacing} is a member for another ccTLD, not for .{claim.cctld.unicode}"
        elif same_address(replaced.address, requester):
            problem = "a member cannot replace themselves"
        else:
            replacing = replaced.address
    cctld_hour = ledger.opened_since(since, cctld)
    all_hour = ledger.opened_since(since)
    return intake.Facts(
        open_request_id=open_row[0] if open_row else None,
        open_request_cctld=open_row[1] if open_row else None,
        member_request_id=(member.request_id or 0) if member else None,
        seats_used=seats,
        cctld_last_hour=cctld_hour,
        all_last_hour=all_hour,
        replacing=replacing,
        replacing_problem=problem,
    )


@dataclass(frozen=True)
class ReplyPlan:
    approver: Approver | None  # the approver the token was minted for
    request: Request | None  # its request (or the requester's token's)
    sender: Any  # SenderCheck
    decision: Any  # ReadDecision
    token_problem: str | None = None  # why no token was taken although the mail names one
    thread_request_id: int | None = None  # the request whose mail this answers by In-Reply-To/References
    requester: bool = False  # the token is the requester's own reply address (WITHDRAW)
    # From is not the contact's address: whether the sender qualifies to answer on its behalf, and the
    # check of the sender's own address (delegation.py). None when From is the contact's or delegates are off.
    delegate: Any = None  # delegation.Qualification
    delegate_sender: Any = None  # SenderCheck for the delegate's own address
    confirmation: Any = None  # confirmations.Confirmation: the token is a remove/revet question's


class ReplyHandler:
    """A reply to a token address: judge it; decide, ask for clarity, or say why it does not count.

    The token is read from one place (tokens.reply_token); under a DKIM or DMARC policy the header it came
    from must be signed. An approver's token can decide APPROVE or DENY, or record NOT MINE (no decision);
    the requester's (on the acknowledgement) only WITHDRAW."""

    @staticmethod
    def prepare(bot: Bot, incoming: Incoming) -> ReplyPlan:
        mail = incoming.mail
        found = tokens.reply_token(mail, bot.bot_address, bot.config.imap.envelope_header)
        if found.token is None:
            return ReplyPlan(None, None, None, read_decision(mail), token_problem=found.problem)
        token_header = None if found.trusted_header else found.header
        auth = bot.rules.authentication
        approver = bot.ledger.approver_of_token(tokens.digest(found.token))
        if approver is None:
            own = bot.ledger.request_of_requester_token(tokens.digest(found.token))
            if own is None:
                confirmation = confirmations.by_token(bot.store, found.token)
                if confirmation is None:
                    return ReplyPlan(None, None, None, read_decision(mail))
                return _confirmation_plan(bot, incoming, confirmation, token_header)
            effective = bot.require_for(own.requester)
            sender = check_sender(
                mail,
                expected_from=own.requester,
                authserv_id=auth.authserv_id,
                require=effective.level,
                dnsfunc=bot.dnsfunc,
                token_header=token_header,
            )
            if effective.note:
                sender.checks["dmarc_policy"] = effective.note
            return ReplyPlan(None, own, sender, read_decision(mail, REQUESTER_WORDS), requester=True)
        request = bot.ledger.request(approver.request_id)
        effective = bot.require_for(approver.email)  # adaptive: by the approver's DMARC policy (DNS)
        sender = check_sender(
            mail,
            expected_from=approver.email,
            authserv_id=auth.authserv_id,
            require=effective.level,
            dnsfunc=bot.dnsfunc,
            token_header=token_header,
        )
        if effective.note:  # why this level, audited with the checks it chose
            sender.checks["dmarc_policy"] = effective.note
        qualification, delegate_sender = _delegate_check(
            bot,
            mail,
            sender,
            token_header,
            contact=approver.email,
            contacts=lambda: workflow.iana_contacts(bot, request),
            requester=request.requester,
            objected_before=lambda: delegation.objected_before(bot.store, request.id),
        )
        return ReplyPlan(
            approver,
            request,
            sender,
            read_decision(mail),
            thread_request_id=_thread_request(bot, mail),
            delegate=qualification,
            delegate_sender=delegate_sender,
        )

    @staticmethod
    def commit(bot: Bot, incoming: Incoming) -> Outcome:
        plan: ReplyPlan = incoming.plan
        context = _base_context(bot)
        if plan.confirmation is not None:
            return _confirmation_reply(bot, incoming, plan)
        if plan.requester:
            return _requester_reply(bot, incoming, plan)
        if plan.approver is None:
            rule = "token-ambiguous" if plan.token_problem else "token-unknown"
            bot.store.audit(
                "reply-rejected",
                at=bot.now(),
                message_row=incoming.row,
                rule=rule,
                problem=plan.token_problem,
                sender=incoming.mail.from_addr,
            )
            _watch_token_guessing(bot, incoming)
            _limited_reply(
                bot,
                incoming,
                purpose="reply-not-accepted",
                template="reply_not_accepted.txt",
                context={**context, "rule": rule},
            )
            return Outcome(f"rejected:{rule}")
        request, approver, mail = plan.request, plan.approver, incoming.mail
        assert request is not None  # prepare() found it with the approver
        sender = plan.sender
        qualified = plan.delegate is not None and plan.delegate.ok
        if qualified:
            sender = plan.delegate_sender
        elif plan.delegate is not None and plan.delegate.rule != "delegate-org-domain":
            # Someone of the contact's own organisation, with a reason that can be put right: say which.
            return _delegate_refused(bot, incoming, plan)
        judgement = workflow.judge_reply(
            request_state=request.state,
            approver_state=approver.state,
            approver_expires_at=workflow.from_iso(approver.expires_at),
            requester=request.requester,
            sender=sender,
            mail_from=mail.from_addr,
            decision=plan.decision,
            now=bot.now(),
            request_id=request.id,
            thread_request_id=plan.thread_request_id,
        )
        checks = dict(sender.checks)
        if qualified:
            checks["delegated_for"] = approver.email
        audit = {
            "rule": judgement.rule,
            "failure": sender.failure,
            "checks": checks,
            "approver": approver.email,
            "sender": mail.from_addr,
            "first_line": plan.decision.first_line[:200],
        }
        ctx = {
            **workflow.request_context(bot, request),
            "approver": {"email": approver.email, "name": approver.name or ""},
        }
        if judgement.outcome == "reject":
            bot.store.audit("reply-rejected", at=bot.now(), message_row=incoming.row, request_id=request.id, **audit)
            if judgement.rule != "from-unreadable":  # several From addresses: no one to answer safely
                _limited_reply(
                    bot,
                    incoming,
                    purpose="reply-not-accepted",
                    template="reply_not_accepted.txt",
                    context={**context, "rule": judgement.rule},
                    request_id=request.id,
                )
            # A forgery alert only for what reads as a person deciding: a colleague's question or a
            # misdirected machine on a token address is no attack, and would make the alert worthless.
            if judgement.rule in SECURITY_RULES and reads_as_decision(plan.decision):
                bot.outbox.queue_mail(
                    purpose="reply-rejected-secretariat",
                    template="reply_rejected_secretariat.txt",
                    context={**ctx, "rule": judgement.rule, "sender": mail.from_addr or "", "checks": checks},
                    to=[bot.secretariat],
                    request_id=request.id,
                )
            return Outcome(f"rejected:{judgement.rule}", request.id)
        if judgement.outcome == "already-decided":
            bot.store.audit(
                "reply-after-decision", at=bot.now(), message_row=incoming.row, request_id=request.id, **audit
            )
            _limited_reply(
                bot,
                incoming,
                purpose="already-decided",
                template="already_decided.txt",
                context=ctx,
                request_id=request.id,
                language=bot.rules.languages.for_cctld(request.cctld),
            )
            return Outcome("already-decided", request.id)
        if judgement.outcome == "clarify":
            why, purpose = plan.decision.why, "clarify"
            if judgement.rule == "thread-mismatch":
                why, purpose = _thread_mismatch_why(bot, plan.thread_request_id, request), "clarify-thread"
            bot.store.audit(
                "reply-unclear", at=bot.now(), message_row=incoming.row, request_id=request.id, why=why, **audit
            )
            silenced = _silenced(bot, incoming, request_id=request.id, purpose=purpose, to=approver.email)
            if silenced:
                bot.store.audit(
                    "reply-suppressed",
                    at=bot.now(),
                    message_row=incoming.row,
                    request_id=request.id,
                    purpose=purpose,
                    to=approver.email,
                    why=silenced,
                )
                return Outcome("clarification-suppressed", request.id)
            bot.outbox.queue_mail(
                purpose=purpose,
                template="clarify.txt",
                context={**ctx, "why": why},
                to=[approver.email],
                in_reply_to=mail.message_id,
                request_id=request.id,
                cause_message=incoming.row,
                auto="auto-replied",
                reply_to=_reply_address_of(mail, bot),
                language=bot.rules.languages.for_cctld(request.cctld),
            )
            return Outcome("clarification-asked", request.id)
        if judgement.outcome == "not-mine":
            escalated = workflow.not_mine(
                bot,
                request,
                approver,
                message_row=incoming.row,
                in_reply_to=mail.message_id,
                checks=checks,
                rule=judgement.rule,
            )
            return Outcome("not-mine", request.id, extra={"escalated": escalated})
        assert judgement.verdict is not None  # judge_reply gives a verdict with every "decide"
        if judgement.verdict is Verdict.OBJECT:
            return _objection(bot, incoming, plan, request, approver, ctx)
        if qualified and judgement.verdict is Verdict.APPROVE:
            workflow.delegated_approve(
                bot, request, approver, delegate=mail.from_addr or "", checks=checks, message_row=incoming.row
            )
            return Outcome("delegated:approve-waiting", request.id)
        if qualified:
            workflow.delegated_deny(
                bot,
                request,
                approver,
                delegate=mail.from_addr or "",
                checks=checks,
                reason=plan.decision.reason,
                message_row=incoming.row,
                headers=mail.raw_headers().decode("utf-8", "replace"),
            )
            return Outcome("delegated:deny", request.id)
        workflow.decide(
            bot,
            request,
            judgement.verdict,
            decided_by=approver.email,
            via="mail",
            reason=plan.decision.reason,
            approver_id=approver.id,
            message_row=incoming.row,
            checks=checks,
            rule=judgement.rule,
            headers=mail.raw_headers().decode("utf-8", "replace"),
        )
        return Outcome(f"decided:{judgement.verdict.value.lower()}", request.id)


def _delegate_refused(bot: Bot, incoming: Incoming, plan: ReplyPlan) -> Outcome:
    """A reply with a contact's token from someone of its organisation who does not (yet) qualify as a
    delegate: nothing is decided; they are told which condition failed and how to answer so it counts."""
    request, approver, mail, why = plan.request, plan.approver, incoming.mail, plan.delegate
    assert request is not None and approver is not None  # only a contact's token gets here
    checks = {**plan.sender.checks, **{f"delegate_{k}": v for k, v in (plan.delegate_sender.checks or {}).items()}}
    bot.store.audit(
        "reply-rejected",
        at=bot.now(),
        message_row=incoming.row,
        request_id=request.id,
        rule=why.rule,
        failure=why.why,
        checks=checks,
        approver=approver.email,
        sender=mail.from_addr,
        first_line=plan.decision.first_line[:200],
    )
    _limited_reply(
        bot,
        incoming,
        purpose="reply-not-accepted",
        template="reply_not_accepted.txt",
        context={
            **_base_context(bot),
            "rule": why.rule,
            "delegate_why": "" if why.rule == "self-approval" else why.why,
            "contact": approver.email,
        },
        request_id=request.id,
    )
    if why.rule in ("delegate-unauthenticated", "self-approval") and reads_as_decision(plan.decision):
        ctx = {**workflow.request_context(bot, request), "approver": {"email": approver.email, "name": ""}}
        bot.outbox.queue_mail(
            purpose="reply-rejected-secretariat",
            template="reply_rejected_secretariat.txt",
            context={**ctx, "rule": why.rule, "sender": mail.from_addr or "", "checks": checks},
            to=[bot.secretariat],
            request_id=request.id,
        )
    return Outcome(f"rejected:{why.rule}", request.id)


def _objection(bot: Bot, incoming: Incoming, plan: ReplyPlan, request: Any, approver: Any, ctx: dict) -> Outcome:
    """OBJECT from a contact (or a qualifying delegate): cancels the delegated APPROVE waiting on this request."""
    waiting = delegation.waiting(bot.store, request.id)
    if waiting is None:
        why = (
            "your reply said OBJECT, but no answer given on a contact's behalf is waiting for this request, so "
            "there is nothing to object to; to decide, answer APPROVE or DENY"
        )
        bot.store.audit("reply-unclear", at=bot.now(), message_row=incoming.row, request_id=request.id, why=why)
        bot.outbox.queue_mail(
            purpose="clarify",
            template="clarify.txt",
            context={**ctx, "why": why},
            to=[approver.email],
            in_reply_to=incoming.mail.message_id,
            request_id=request.id,
            cause_message=incoming.row,
            auto="auto-replied",
            reply_to=_reply_address_of(incoming.mail, bot),
        )
        return Outcome("clarification-asked", request.id)
    workflow.delegation_objected(
        bot, request, waiting, objector=incoming.mail.from_addr or approver.email, message_row=incoming.row
    )
    return Outcome("delegation-objected", request.id)


# --- questions about members (confirmations.py): remove ADDRESS, re-vetting ---------------------------


def _cctld_contacts(bot: Bot, cctld: str) -> list[str]:
    """The addresses IANA lists for the ccTLD in the approving roles (the newest record kept)."""
    return [a.email for a in approvers_of(bot.store, cctld, bot.rules.approvers.roles)]


def at_least_dmarc(bot: Bot, address: str) -> str:
    """The level a mail must pass when the rules' own may be weaker (a delegate, a leave): dkim where the
    rules resolve to dkim for this address, else dmarc."""
    return "dkim" if bot.require_for(address).level == "dkim" else "dmarc"


def _delegate_check(
    bot: Bot,
    mail: InboundMail,
    sender: Any,
    token_header: str | None,
    *,
    contact: str,
    contacts: Callable[[], list[str]],
    requester: str,
    objected_before: Callable[[], bool],
) -> tuple[Any, Any]:
    """(Qualification, the delegate's own SenderCheck) when From is not the contact and delegates are
    allowed, else (None, None). `contacts` and `objected_before` are read only then."""
    if sender.rule != "from-mismatch" or not bot.rules.approvers.delegates.allow or not mail.from_addr:
        return None, None
    # The delegate's own address must authenticate at dmarc at least, whatever the rules require.
    delegate_sender = check_sender(
        mail,
        expected_from=mail.from_addr,
        authserv_id=bot.rules.authentication.authserv_id,
        require=at_least_dmarc(bot, mail.from_addr),
        dnsfunc=bot.dnsfunc,
        token_header=token_header,
    )
    qualification = delegation.conditions(
        delegate=mail.from_addr,
        contact=contact,
        contacts=contacts(),
        requester=requester,
        authentication=delegate_sender,
        copied=[*mail.addresses_in("To"), *mail.addresses_in("Cc")],
        objected_before=objected_before(),
    )
    return qualification, delegate_sender


def _confirmation_plan(bot: Bot, incoming: Incoming, confirmation: Any, token_header: str | None) -> ReplyPlan:
    """A reply to a remove/revet question: checked exactly as an answer to an approval request, a person
    behind the contact's role address included (delegation.py)."""
    mail, auth = incoming.mail, bot.rules.authentication
    sender = check_sender(
        mail,
        expected_from=confirmation.contact,
        authserv_id=auth.authserv_id,
        require=bot.require_for(confirmation.contact).level,
        dnsfunc=bot.dnsfunc,
        token_header=token_header,
    )
    qualification, delegate_sender = _delegate_check(
        bot,
        mail,
        sender,
        token_header,
        contact=confirmation.contact,
        contacts=lambda: _cctld_contacts(bot, confirmation.cctld),
        requester=confirmation.address or "",
        objected_before=lambda: False,
    )
    return ReplyPlan(
        None,
        None,
        sender,
        read_decision(mail),
        delegate=qualification,
        delegate_sender=delegate_sender,
        confirmation=confirmation,
    )


def _confirmation_reply(bot: Bot, incoming: Incoming, plan: ReplyPlan) -> Outcome:
    confirmation, mail, now = plan.confirmation, incoming.mail, bot.now()
    sender = plan.sender
    if not sender.ok and plan.delegate is not None and plan.delegate.ok:
        sender = plan.delegate_sender
    context = {**_base_context(bot), "cctld": parse_tld(confirmation.cctld).display(), "contact": confirmation.contact}
    audit = {"kind": confirmation.kind, "contact": confirmation.contact, "sender": mail.from_addr}
    if not sender.ok:
        rule = plan.delegate.rule if plan.delegate is not None and not plan.delegate.ok else sender.rule
        bot.store.audit("reply-rejected", at=now, message_row=incoming.row, rule=rule, checks=sender.checks, **audit)
        why = plan.delegate.why if plan.delegate is not None and plan.delegate.rule != "delegate-org-domain" else ""
        _limited_reply(
            bot,
            incoming,
            purpose="reply-not-accepted",
            template="reply_not_accepted.txt",
            context={
                **_base_context(bot),
                "rule": rule or "from-mismatch",
                "delegate_why": why,
                "contact": confirmation.contact,
            },
        )
        return Outcome(f"rejected:{rule}")
    if not confirmations.is_open(confirmation, now):
        rule = "token-expired" if confirmation.state == "open" else "token-used"
        bot.store.audit("reply-rejected", at=now, message_row=incoming.row, rule=rule, **audit)
        _limited_reply(
            bot,
            incoming,
            purpose="reply-not-accepted",
            template="reply_not_accepted.txt",
            context={**context, "rule": rule},
        )
        return Outcome(f"rejected:{rule}")
    answerer = mail.from_addr or confirmation.contact
    on_behalf = "" if same_address(answerer, confirmation.contact) else f" for {confirmation.contact}"
    text = read_new_text(mail).text
    if confirmation.kind == "remove":
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        wanted = [confirmation.address] if confirmations.says_confirm(first) else []
        if not wanted:
            _limited_reply(
                bot,
                incoming,
                purpose="members-answer",
                template="members_answer.txt",
                context={**context, "kind": "remove", "removed": [], "not_members": [], "unclear": first[:80]},
                language=bot.rules.languages.for_cctld(confirmation.cctld),
            )
            return Outcome("remove-unclear")
    else:
        wanted = list(confirmations.read_revet_answer(text).remove)
    removed, not_members = [], []
    for address in wanted:
        member = roster.on_list(bot.store, address)
        if member is None or member.cctld != confirmation.cctld:
            not_members.append(address)
            continue
        outcome = membership.remove(
            bot,
            member,
            actor=answerer,
            reason=(
                f"removal asked by {confirmation.contact}, an IANA contact of .{confirmation.cctld}"
                if confirmation.kind == "remove"
                else f"re-vetting: {answerer}{on_behalf} answered REMOVE"
            ),
            asked_by=f"{answerer}{on_behalf}, an IANA contact of {context['cctld']},",
            cause_message=incoming.row,
        )
        removed.append(outcome.member.address)
    if wanted or confirmation.kind == "remove":
        confirmations.use(bot.store, confirmation, now)
    bot.store.audit(
        "members-answered",
        at=now,
        actor=answerer,
        message_row=incoming.row,
        removed=removed,
        not_members=not_members,
        checks=sender.checks,
        **audit,
    )
    bot.outbox.queue_mail(
        purpose="members-answer",
        template="members_answer.txt",
        context={**context, "kind": confirmation.kind, "removed": removed, "not_members": not_members, "unclear": ""},
        to=[answerer],
        in_reply_to=mail.message_id,
        cause_message=incoming.row,
        auto="auto-replied",
        language=bot.rules.languages.for_cctld(confirmation.cctld),
    )
    return Outcome(f"{confirmation.kind}-answered", extra={"removed": removed, "not_members": not_members})


def _removal_request(bot: Bot, incoming: Incoming) -> Outcome:
    """`remove ADDRESS` from an IANA contact of the member's ccTLD (or a person of its organisation): the
    contact is asked to CONFIRM by a token mail. Anyone else gets one answer that says who may ask,
    and nothing about whether ADDRESS is a member."""
    mail, now = incoming.mail, bot.now()
    target = removal_target(new_text(mail)) or ""
    sender = mail.from_addr or ""
    member = roster.on_list(bot.store, target)
    contacts = _cctld_contacts(bot, member.cctld) if member is not None else []
    contact = next((c for c in contacts if same_address(c, sender)), None)
    if contact is None and bot.rules.approvers.delegates.allow and sender:
        own = delegation.org_of(sender)
        contact = next((c for c in contacts if own and delegation.org_of(c) == own), None)
    if member is None or contact is None:
        bot.store.audit("remove-refused", at=now, message_row=incoming.row, sender=sender, address=target)
        sent = _limited_reply(
            bot,
            incoming,
            purpose="remove-refused",
            template="remove_refused.txt",
            context={**_base_context(bot), "address": target},
        )
        return Outcome("remove-refused" if sent else "remove-refused-suppressed")
    if confirmations.open_question(bot.store, "remove", member.address, contact, now):
        # One open question per member and contact: repeated (or forged) remove mails do not flood the contact.
        bot.store.audit("remove-repeated", at=now, message_row=incoming.row, address=member.address, contact=contact)
        return Outcome("remove-already-asked", member.request_id)
    token = confirmations.issue(
        bot.store,
        kind="remove",
        cctld=member.cctld,
        contact=contact,
        address=member.address,
        now=now,
        valid=confirmations.REMOVE_CONFIRM_VALID,
    )
    bot.store.audit(
        "remove-asked", at=now, actor=sender, message_row=incoming.row, address=member.address, contact=contact
    )
    bot.outbox.queue_mail(
        purpose="remove-confirm",
        template="remove_confirm.txt",
        context={
            **_base_context(bot),
            "address": member.address,
            "cctld": parse_tld(member.cctld).display(),
            "since": member.since[:10],
            "asker": sender,
            "contact": contact,
            "expires": workflow.when(now + confirmations.REMOVE_CONFIRM_VALID),
        },
        to=[contact],
        reply_to=tokens.reply_address(bot.bot_address, token),
        cause_message=incoming.row,
        language=bot.rules.languages.for_cctld(member.cctld),
    )
    return Outcome("remove-confirm-asked", member.request_id)


def _requester_reply(bot: Bot, incoming: Incoming, plan: ReplyPlan) -> Outcome:
    """The requester answered their acknowledgement: only WITHDRAW, from their own address, counts."""
    request, mail, sender = plan.request, incoming.mail, plan.sender
    assert request is not None  # the requester's token names it
    context = _base_context(bot)
    checks = dict(sender.checks)
    audit = {
        "failure": sender.failure,
        "checks": checks,
        "sender": mail.from_addr,
        "first_line": plan.decision.first_line[:200],
    }
    if not sender.ok:
        rule = sender.rule or "sender-not-authenticated"
        bot.store.audit(
            "reply-rejected", at=bot.now(), message_row=incoming.row, request_id=request.id, rule=rule, **audit
        )
        if rule != "from-unreadable":
            _limited_reply(
                bot,
                incoming,
                purpose="reply-not-accepted",
                template="reply_not_accepted.txt",
                context={**context, "rule": rule},
                request_id=request.id,
            )
        return Outcome(f"rejected:{rule}", request.id)
    if request.state not in OPEN_STATES:
        rule = f"request-{request.state}"
        bot.store.audit(
            "reply-rejected", at=bot.now(), message_row=incoming.row, request_id=request.id, rule=rule, **audit
        )
        _limited_reply(
            bot,
            incoming,
            purpose="reply-not-accepted",
            template="reply_not_accepted.txt",
            context={**context, "rule": rule},
            request_id=request.id,
        )
        return Outcome(f"rejected:{rule}", request.id)
    if plan.decision.verdict is not Verdict.WITHDRAW:
        bot.store.audit(
            "reply-unclear",
            at=bot.now(),
            message_row=incoming.row,
            request_id=request.id,
            rule="withdraw-unclear",
            **audit,
        )
        _limited_reply(
            bot,
            incoming,
            purpose="withdraw-unclear",
            template="reply_not_accepted.txt",
            context={**context, "rule": "withdraw-unclear"},
            request_id=request.id,
        )
        return Outcome("withdraw-unclear", request.id)
    workflow.withdraw(bot, request, message_row=incoming.row, checks=checks)
    return Outcome("withdrawn", request.id)


def _thread_request(bot: Bot, mail: InboundMail) -> int | None:
    """The request whose mail this one answers: by In-Reply-To, else the last References entry."""
    parent = normalise_message_id(mail.header("In-Reply-To") or None)
    if parent is None:
        refs = re.findall(r"<[^<>\s]{1,900}>", mail.header("References"))
        parent = refs[-1] if refs else None
    if parent is None:
        return None
    row = bot.store.one("SELECT request_id FROM outbox WHERE message_id = ?", (parent,))
    return int(row["request_id"]) if row is not None and row["request_id"] is not None else None


def _thread_mismatch_why(bot: Bot, thread_request_id: int | None, request: Any) -> str:
    other = bot.ledger.find_request(thread_request_id) if thread_request_id is not None else None
    about = f"request #{other.id} ({other.requester} for .{other.cctld})" if other is not None else "another request"
    return (
        f"your reply was written in the conversation about {about}, but sent to the reply address of "
        f"this request, #{request.id}, so we could not be sure which request you meant. If you meant "
        f"this one, please answer this message"
    )


# Rejections that look like forgery or a forwarded approval mail: the Secretariat hears of each one.
SECURITY_RULES = (
    "from-mismatch",
    "from-unreadable",
    "dmarc-fail",
    "dkim-required",
    "dmarc-required",
    "token-header-unsigned",
    "self-approval",
    "sender-not-authenticated",
)


def _reply_address_of(mail: InboundMail, bot: Bot) -> str | None:
    """The token address the approver wrote to, so that their next reply reaches the same token."""
    token = tokens.find_token(mail.recipients, bot.bot_address)
    return tokens.reply_address(bot.bot_address, token) if token else None


class AutomatedHandler:
    """Automated mail gets no answer. Bounces and out-of-office replies from approvers are noted."""

    @staticmethod
    def prepare(bot: Bot, incoming: Incoming) -> None:
        return None

    @staticmethod
    def commit(bot: Bot, incoming: Incoming) -> Outcome:
        cls = incoming.cls
        if cls.detail == "bounce" and cls.bounced:
            touched = note_contacts(bot, cls.bounced, "bounced", f"bounce: {incoming.mail.subject[:120]}")
            return Outcome("bounce-noted" if touched else "bounce", touched[0] if touched else None)
        if cls.detail == "auto-reply":
            addresses = []
            if cls.token:
                approver = bot.ledger.approver_of_token(tokens.digest(cls.token))
                if approver is not None:
                    addresses.append(approver.email)
            if incoming.mail.from_addr:
                addresses.append(incoming.mail.from_addr)
            touched = note_contacts(bot, tuple(addresses), "away", f"auto-reply: {incoming.mail.subject[:120]}")
            return Outcome("away-noted" if touched else "auto-reply", touched[0] if touched else None)
        return Outcome(cls.detail)


def note_contacts(bot: Bot, addresses: tuple[str, ...], state: str, why: str) -> list[int]:
    """Mark asked approvers of open requests with these addresses as bounced/away. Returns request ids."""
    touched = []
    for address in {address_key(a) for a in addresses} - {""}:
        for approver in bot.ledger.asked_on_pending(address):
            workflow.contact_unreachable(bot, approver, state, why)
            touched.append(approver.request_id)
    return touched


class MailmanHandler:
    """Mailman's own mail about our commands: link it to its request, record it, never answer."""

    @staticmethod
    def prepare(bot: Bot, incoming: Incoming) -> None:
        return None

    @staticmethod
    def commit(bot: Bot, incoming: Incoming) -> Outcome:
        if incoming.cls.detail == "owner-notice":
            gone = membership.confirmed_by_notice(
                bot, incoming.mail.subject, incoming.mail.text or "", message_row=incoming.row
            )
            if gone is not None:
                return Outcome("member-removed", gone.request_id)
        request_id = mailman.link_request(bot, incoming.mail)
        if request_id is None:
            return Outcome(incoming.cls.detail)
        now = bot.now()
        bot.store.audit(
            "mailman-acknowledged",
            at=now,
            request_id=request_id,
            message_row=incoming.row,
            detail=incoming.cls.detail,
            subject=incoming.mail.subject[:200],
        )
        result = mailman.read_results(incoming.mail.text) if incoming.cls.detail == "command-results" else None
        status = MAILMAN_STATES.get(result.state if result else "", "acknowledged")
        bot.ledger.set_mailman_status(request_id, status, now=now, only_from=("queued", "sent", "acknowledged"))
        if result is not None and status in ("conflict", "failed"):
            # Mailman did not take the command (already a member or pending, banned, bad address): the
            # Secretariat hears of it, as with a REST 409.
            request = bot.ledger.request(request_id)
            bot.store.audit(
                f"mailman-{status}", at=now, request_id=request_id, message_row=incoming.row, said=result.line
            )
            bot.outbox.queue_mail(
                purpose="mailman-conflict",
                template="mailman_conflict.txt",
                context={
                    "address": request.requester,
                    "request_id": request_id,
                    "said": result.line,
                    "list_address": bot.config.mailman.list,
                },
                to=[bot.secretariat],
                request_id=request_id,
            )
        return Outcome(incoming.cls.detail, request_id, extra={"mailman_result": result.state} if result else {})


# What a results mail says about our subscribe command -> the request's Mailman status.
MAILMAN_STATES = {
    "confirmation-sent": "acknowledged",
    "subscribed": "member",
    "held": "held",
    "member": "conflict",
    "pending": "conflict",
    "refused": "failed",
}


class MembershipHandler:
    """A member asks to leave (`leave` or `unsubscribe`): exactly the From address is taken off the list.

    Removing a member is a denial of service on a security list if a forged From can do it, so the mail
    must pass the sender check at `dmarc` at least, whatever `authentication.require` says for approvals.
    When it does not, nothing is removed: the Secretariat is asked to confirm, and the member (at the
    address on the roster, which a forger does not read) is told so."""

    @staticmethod
    def prepare(bot: Bot, incoming: Incoming) -> Any:
        if incoming.cls.detail == "remove":
            return None
        sender = incoming.mail.from_addr or ""
        member = roster.on_list(bot.store, sender) if sender else None
        if member is None:
            return None
        check = check_sender(
            incoming.mail,
            expected_from=member.address,
            authserv_id=bot.rules.authentication.authserv_id,
            require=at_least_dmarc(bot, member.address),
            dnsfunc=bot.dnsfunc,
        )
        return member, check

    @staticmethod
    def commit(bot: Bot, incoming: Incoming) -> Outcome:
        if incoming.cls.detail == "remove":
            return _removal_request(bot, incoming)
        context = _base_context(bot)
        if incoming.plan is None:
            sent = _limited_reply(
                bot,
                incoming,
                purpose="leave-not-member",
                template="leave_not_member.txt",
                context={**context, "address": incoming.mail.from_addr},
            )
            return Outcome("leave-not-member" if sent else "leave-not-member-suppressed")
        member, check = incoming.plan
        # The member's own roster row may have changed since prepare (another copy, the CLI): read it again.
        member = roster.on_list(bot.store, member.address)
        if member is None or member.state is roster.MemberState.LEAVING:
            bot.store.audit("leave-repeated", at=bot.now(), message_row=incoming.row, address=incoming.mail.from_addr)
            return Outcome("leave-repeated")
        if not check.ok:
            # Anyone can forge the member's From: the member and the Secretariat hear of it once a day at
            # most, so that forged leave mails cannot be made into a flood at either.
            if bot.outbox.recent(member.address, ["removal-member"], bot.now() - timedelta(days=1)):
                bot.store.audit(
                    "reply-suppressed",
                    at=bot.now(),
                    message_row=incoming.row,
                    purpose="removal-member",
                    to=member.address,
                    why="one unverified-leave notice a day",
                )
                return Outcome("leave-unverified-suppressed", member.request_id)
            bot.store.audit(
                "leave-unverified",
                at=bot.now(),
                message_row=incoming.row,
                address=member.address,
                why=check.failure,
                checks=check.checks,
            )
            bot.outbox.queue_mail(
                purpose="removal-secretariat",
                template="leave_unverified.txt",
                context={**context, "address": member.address, "why": check.failure, "to_secretariat": True},
                to=[bot.secretariat],
                request_id=member.request_id,
                cause_message=incoming.row,
            )
            bot.outbox.queue_mail(
                purpose="removal-member",
                template="leave_unverified.txt",
                context={**context, "address": member.address, "why": check.failure, "to_secretariat": False},
                to=[member.address],
                request_id=member.request_id,
                cause_message=incoming.row,
            )
            return Outcome("leave-unverified", member.request_id)
        removal = membership.remove(
            bot,
            member,
            actor=member.address,
            reason="asked to leave",
            asked_by="The member",
            cause_message=incoming.row,
        )
        return Outcome(f"leave-{removal.how}", member.request_id, extra={"checks": check.checks})


class OtherHandler:
    """A human wrote something that is not a request: one short help reply per day."""

    @staticmethod
    def prepare(bot: Bot, incoming: Incoming) -> None:
        return None

    @staticmethod
    def commit(bot: Bot, incoming: Incoming) -> Outcome:
        if incoming.cls.detail in ("no-sender",):
            return Outcome("no-sender")
        sent = _limited_reply(
            bot,
            incoming,
            purpose="help",
            template="help.txt",
            context={**_base_context(bot), "detail": incoming.cls.detail},
        )
        return Outcome("help-sent" if sent else "help-suppressed")


HANDLERS: dict[Kind, Any] = {
    Kind.REQUEST: RequestHandler,
    Kind.REPLY: ReplyHandler,
    Kind.AUTOMATED: AutomatedHandler,
    Kind.MAILMAN: MailmanHandler,
    Kind.MEMBERSHIP: MembershipHandler,
    Kind.OTHER: OtherHandler,
}
