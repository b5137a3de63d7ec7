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
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from . import intake, mailman, tokens, workflow
from .authenticity import check_sender
from .classify import Classification, Kind, classify
from .message import InboundMail, UnparseableMail, parse_mail
from .replies import new_text, read_decision
from .store import iso

if TYPE_CHECKING:
    from .bot import Bot

log = logging.getLogger(__name__)

FOLDER_PROCESSED = "processed"
FOLDER_FAILED = "failed"
# Full raw bytes are kept for the kinds whose content can matter later (audit of a decision); for the
# rest the headers suffice and a flood of junk does not grow the store by its bodies.
KEEP_WHOLE = (Kind.REQUEST, Kind.REPLY, Kind.MAILMAN)


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
    known = bot.store.one("SELECT outcome FROM messages WHERE folder = ? AND uidvalidity = ? AND uid = ?",
                          (origin.folder, origin.uidvalidity, origin.uid))
    if known is not None:  # committed before a crash or a lost connection kept us from filing it
        return FOLDER_FAILED if known["outcome"] == "failed" else FOLDER_PROCESSED
    try:
        mail = parse_mail(raw)
    except UnparseableMail as exc:
        log.info("message uid=%s quarantined: %s", origin.uid, exc)
        _record_failure(bot, origin, raw, None, "unparseable", str(exc))
        return FOLDER_FAILED
    if headers_only:
        _record_failure(bot, origin, raw, mail, "too-large",
                        f"larger than imap.max_message_size ({bot.config.imap.max_message_size} bytes)",
                        tell_secretariat=True)
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
            bot.store.execute("UPDATE messages SET detail = ?, request_id = ? WHERE id = ?",
                              (outcome.detail, outcome.request_id, incoming.row))
            bot.store.audit("message-processed", at=bot.now(), message_row=incoming.row,
                            request_id=outcome.request_id, kind=cls.kind.value, detail=outcome.detail,
                            signals=list(cls.signals), **outcome.extra)
    except Exception as exc:  # ours, not the sender's: quarantine with the reason, keep the loop alive
        log.error("message uid=%s from %s failed: %s\n%s", origin.uid, mail.from_addr, exc,
                  traceback.format_exc())
        _record_failure(bot, origin, raw, mail, cls.kind.value, f"internal error: {type(exc).__name__}: {exc}",
                        tell_secretariat=cls.kind is not Kind.AUTOMATED)
        return FOLDER_FAILED
    log.info("message uid=%s from %s: %s/%s -> %s", origin.uid, mail.from_addr, cls.kind.value, cls.detail,
             outcome.detail)
    return FOLDER_PROCESSED


def _insert(bot: Bot, origin: Origin, mail: InboundMail | None, raw: bytes, kind: str, detail: str,
            outcome: str, reason: str | None) -> int:
    keep = raw if mail is None or kind in {k.value for k in KEEP_WHOLE} else mail.raw_headers()
    cur = bot.store.execute(
        "INSERT INTO messages (folder, uidvalidity, uid, message_id, body_hash, raw_hash, size, processed_at,"
        " from_addr, subject, kind, detail, outcome, reason, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (origin.folder, origin.uidvalidity, origin.uid, mail.message_id if mail else None,
         mail.body_hash if mail else _hash(raw), _hash(raw), len(raw), iso(bot.now()),
         mail.from_addr if mail else None, mail.subject[:500] if mail else None, kind, detail, outcome, reason,
         keep),
    )
    return int(cur.lastrowid)


def _hash(raw: bytes) -> str:
    return hashlib.sha256(raw.lstrip(b"\r\n")).hexdigest()


def _record_failure(bot: Bot, origin: Origin, raw: bytes, mail: InboundMail | None, kind: str,
                    reason: str, tell_secretariat: bool = False) -> None:
    """Quarantine: the record and the reason; a person's mail we could not handle is also reported, so
    that an approval or a request never disappears silently into the Failed folder."""
    with bot.store.transaction():
        row = _insert(bot, origin, mail, raw, kind, "quarantined", "failed", reason)
        bot.store.audit("message-failed", at=bot.now(), message_row=row, reason=reason)
        if tell_secretariat and mail is not None:
            bot.outbox.queue_mail(
                purpose="message-quarantined", template="message_quarantined.txt",
                context={**_base_context(bot), "sender": mail.from_addr or "(none)", "subject": mail.subject[:200],
                         "message_id": mail.message_id or "(none)", "reason": reason[:500], "row": row,
                         "folder": bot.config.imap.failed_folder},
                to=[bot.secretariat], cause_message=row)


def _find_duplicate(bot: Bot, mail: InboundMail) -> int | None:
    """The same message delivered twice (or re-appended after a UIDVALIDITY change): same Message-ID and
    same body. A Message-ID alone could be forged to shadow a genuine reply, so the body must match too."""
    if mail.message_id:
        row = bot.store.one("SELECT id FROM messages WHERE message_id = ? AND body_hash = ? AND outcome != 'failed'",
                            (mail.message_id, mail.body_hash))
    else:  # nothing names it: only the very same bytes (re-numbered after a UIDVALIDITY change) match
        row = bot.store.one("SELECT id FROM messages WHERE raw_hash = ? AND outcome != 'failed'", (_hash(mail.raw),))
    return int(row["id"]) if row else None


# --- helpers shared by handlers --------------------------------------------------------------------

def _limited_reply(bot: Bot, incoming: Incoming, *, purpose: str, template: str, context: dict[str, Any],
                   request_id: int | None = None, reply_to: str | None = None) -> bool:
    """Answer a human at most `replies_per_sender_per_day` times per purpose. True if queued."""
    sender = incoming.mail.from_addr
    if not sender:
        return False
    since = bot.now() - timedelta(days=1)
    if bot.outbox.recent(sender, [purpose], since) >= bot.rules.requests.replies_per_sender_per_day:
        bot.store.audit("reply-suppressed", at=bot.now(), message_row=incoming.row, request_id=request_id,
                        purpose=purpose, to=sender)
        return False
    bot.outbox.queue_mail(purpose=purpose, template=template, context=context, to=[sender],
                          in_reply_to=incoming.mail.message_id, request_id=request_id,
                          cause_message=incoming.row, auto="auto-replied", reply_to=reply_to)
    return True


def _base_context(bot: Bot) -> dict[str, Any]:
    return {"bot": bot.bot_address, "secretariat": bot.secretariat, "list_address": bot.config.mailman.list}


# --- handlers ------------------------------------------------------------------------------------

class RequestHandler:
    """A new request: read the claim, check the rules, resolve IANA afresh, open it or say why not."""

    @staticmethod
    def prepare(bot: Bot, incoming: Incoming) -> Any:
        mail = incoming.mail
        claim = intake.read_claim(mail, new_text(mail), bot.rules.requests.claim_max_chars)
        if isinstance(claim, intake.ClaimProblem):
            return claim
        facts = gather_facts(bot, mail.from_addr or "", claim)
        refusal = intake.check(claim, bot.rules, facts)
        if refusal is not None:
            return (claim, (refusal, facts))
        return (claim, bot.iana.resolve(claim.cctld, fresh=True))

    @staticmethod
    def commit(bot: Bot, incoming: Incoming) -> Outcome:
        plan = incoming.plan
        context = _base_context(bot)
        if isinstance(plan, intake.ClaimProblem):
            _limited_reply(bot, incoming, purpose="request-problem", template="request_problem.txt",
                           context={**context, "reason": plan.reason, "names": list(plan.names)})
            return Outcome(f"request-problem:{plan.reason}", extra={"names": list(plan.names)})
        claim, second = plan
        if isinstance(second, tuple):  # refused: (the rule, the facts it was judged on)
            second, facts = second
            open_id = facts.open_request_id
            _limited_reply(bot, incoming, purpose=f"refused-{second.rule}", template="request_refused.txt",
                           context={**context, "rule": second.rule, "detail": second.detail,
                                    "cctld": claim.cctld.unicode, "cctld_display": claim.cctld.display(),
                                    "open_request_id": open_id,
                                    "seats": bot.rules.requests.seats_per_cctld})
            bot.store.audit("request-refused", at=bot.now(), message_row=incoming.row, rule=second.rule,
                            detail=second.detail, cctld=claim.cctld.ascii, requester=incoming.mail.from_addr)
            return Outcome(f"refused:{second.rule}")
        request_id = workflow.open_request(bot, requester=incoming.mail.from_addr or "", claim=claim,
                                           resolution=second, message_row=incoming.row,
                                           in_reply_to=incoming.mail.message_id)
        return Outcome("request-opened", request_id)


def gather_facts(bot: Bot, requester: str, claim: intake.Claim) -> intake.Facts:
    store, key, cctld = bot.store, requester.lower(), claim.cctld.ascii
    since = iso(intake.hour_window(bot.now()))
    open_row = store.one("SELECT id, cctld FROM requests WHERE requester_key = ? AND state IN"
                         " ('resolving', 'pending') ORDER BY id LIMIT 1", (key,))
    member = store.one("SELECT id FROM requests WHERE requester_key = ? AND state = 'approved' ORDER BY id LIMIT 1",
                       (key,))
    seats = store.one("SELECT COUNT(*) AS n FROM requests WHERE cctld = ? AND state IN"
                      " ('resolving', 'pending', 'approved')", (cctld,))
    cctld_hour = store.one("SELECT COUNT(*) AS n FROM requests WHERE cctld = ? AND created_at >= ?", (cctld, since))
    all_hour = store.one("SELECT COUNT(*) AS n FROM requests WHERE created_at >= ?", (since,))
    return intake.Facts(
        open_request_id=open_row["id"] if open_row else None,
        open_request_cctld=open_row["cctld"] if open_row else None,
        member_request_id=member["id"] if member else None,
        seats_used=seats["n"], cctld_last_hour=cctld_hour["n"], all_last_hour=all_hour["n"],
    )


@dataclass(frozen=True)
class ReplyPlan:
    approver: Any           # sqlite3.Row of the approver the token was minted for, or None
    request: Any            # sqlite3.Row of its request, or None
    sender: Any             # SenderCheck
    decision: Any           # ReadDecision


class ReplyHandler:
    """A reply to a token address: judge it; decide, ask for clarity, or say why it does not count."""

    @staticmethod
    def prepare(bot: Bot, incoming: Incoming) -> ReplyPlan:
        token = incoming.cls.token or ""
        approver = bot.store.one("SELECT a.* FROM tokens t JOIN approvers a ON a.id = t.approver_id"
                                 " WHERE t.token_hash = ?", (tokens.digest(token),))
        if approver is None:
            return ReplyPlan(None, None, None, None)
        request = workflow.get_request(bot, approver["request_id"])
        auth = bot.rules.authentication
        sender = check_sender(incoming.mail, expected_from=approver["email"], authserv_id=auth.authserv_id,
                              require=auth.require, dnsfunc=bot.dnsfunc)
        return ReplyPlan(approver, request, sender, read_decision(incoming.mail))

    @staticmethod
    def commit(bot: Bot, incoming: Incoming) -> Outcome:
        plan: ReplyPlan = incoming.plan
        context = _base_context(bot)
        if plan.approver is None:
            bot.store.audit("reply-rejected", at=bot.now(), message_row=incoming.row, rule="token-unknown",
                            sender=incoming.mail.from_addr)
            _limited_reply(bot, incoming, purpose="reply-not-accepted", template="reply_not_accepted.txt",
                           context={**context, "rule": "token-unknown"})
            return Outcome("rejected:token-unknown")
        request, approver, mail = plan.request, plan.approver, incoming.mail
        judgement = workflow.judge_reply(
            request_state=request["state"], approver_state=approver["state"],
            approver_expires_at=workflow.from_iso(approver["expires_at"]), requester=request["requester"],
            sender=plan.sender, mail_from=mail.from_addr, decision=plan.decision, now=bot.now())
        checks = dict(plan.sender.checks)
        audit = {"rule": judgement.rule, "failure": plan.sender.failure, "checks": checks,
                 "approver": approver["email"], "sender": mail.from_addr,
                 "first_line": plan.decision.first_line[:200]}
        ctx = {**workflow.request_context(bot, request), "approver": {"email": approver["email"],
                                                                      "name": approver["name"] or ""}}
        if judgement.outcome == "reject":
            bot.store.audit("reply-rejected", at=bot.now(), message_row=incoming.row, request_id=request["id"],
                            **audit)
            if judgement.rule != "from-unreadable":  # several From addresses: no one to answer safely
                _limited_reply(bot, incoming, purpose="reply-not-accepted", template="reply_not_accepted.txt",
                               context={**context, "rule": judgement.rule}, request_id=request["id"])
            if judgement.rule in SECURITY_RULES:
                bot.outbox.queue_mail(purpose="reply-rejected-secretariat", template="reply_rejected_secretariat.txt",
                                      context={**ctx, "rule": judgement.rule, "sender": mail.from_addr or "",
                                               "checks": checks}, to=[bot.secretariat], request_id=request["id"])
            return Outcome(f"rejected:{judgement.rule}", request["id"])
        if judgement.outcome == "already-decided":
            bot.store.audit("reply-after-decision", at=bot.now(), message_row=incoming.row,
                            request_id=request["id"], **audit)
            _limited_reply(bot, incoming, purpose="already-decided", template="already_decided.txt",
                           context=ctx, request_id=request["id"])
            return Outcome("already-decided", request["id"])
        if judgement.outcome == "clarify":
            bot.store.audit("reply-unclear", at=bot.now(), message_row=incoming.row, request_id=request["id"],
                            why=plan.decision.why, **audit)
            bot.outbox.queue_mail(purpose="clarify", template="clarify.txt",
                                  context={**ctx, "why": plan.decision.why},
                                  to=[approver["email"]], in_reply_to=mail.message_id, request_id=request["id"],
                                  cause_message=incoming.row, auto="auto-replied",
                                  reply_to=_reply_address_of(mail, bot))
            return Outcome("clarification-asked", request["id"])
        workflow.decide(bot, request, judgement.verdict, decided_by=approver["email"], via="mail",
                        reason=plan.decision.reason, approver_id=approver["id"], message_row=incoming.row,
                        checks=checks, rule=judgement.rule,
                        headers=mail.raw_headers().decode("utf-8", "replace"))
        return Outcome(f"decided:{judgement.verdict.value.lower()}", request["id"])


# Rejections that look like forgery or a forwarded approval mail: the Secretariat hears of each one.
SECURITY_RULES = ("from-mismatch", "from-unreadable", "dmarc-fail", "dkim-required", "dmarc-required",
                  "self-approval", "sender-not-authenticated")


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
                approver = bot.store.one("SELECT a.email FROM tokens t JOIN approvers a ON a.id = t.approver_id"
                                         " WHERE t.token_hash = ?", (tokens.digest(cls.token),))
                if approver is not None:
                    addresses.append(approver["email"])
            if incoming.mail.from_addr:
                addresses.append(incoming.mail.from_addr)
            touched = note_contacts(bot, tuple(addresses), "away", f"auto-reply: {incoming.mail.subject[:120]}")
            return Outcome("away-noted" if touched else "auto-reply", touched[0] if touched else None)
        return Outcome(cls.detail)


def note_contacts(bot: Bot, addresses: tuple[str, ...], state: str, why: str) -> list[int]:
    """Mark asked approvers of open requests with these addresses as bounced/away. Returns request ids."""
    touched = []
    for address in {a.lower() for a in addresses}:
        for approver in bot.store.all(
                "SELECT a.* FROM approvers a JOIN requests r ON r.id = a.request_id"
                " WHERE a.email_key = ? AND a.state = 'asked' AND r.state = 'pending'", (address,)):
            workflow.contact_unreachable(bot, approver, state, why)
            touched.append(approver["request_id"])
    return touched


class MailmanHandler:
    """Mailman's own mail about our commands: link it to its request, record it, never answer."""

    @staticmethod
    def prepare(bot: Bot, incoming: Incoming) -> None:
        return None

    @staticmethod
    def commit(bot: Bot, incoming: Incoming) -> Outcome:
        request_id = mailman.link_request(bot, incoming.mail)
        if request_id is None:
            return Outcome(incoming.cls.detail)
        now = bot.now()
        bot.store.audit("mailman-acknowledged", at=now, request_id=request_id, message_row=incoming.row,
                        detail=incoming.cls.detail, subject=incoming.mail.subject[:200])
        result = mailman.read_results(incoming.mail.text) if incoming.cls.detail == "command-results" else None
        status = MAILMAN_STATES.get(result.state if result else "", "acknowledged")
        bot.store.execute("UPDATE requests SET mailman_status = ?, updated_at = ? WHERE id = ?"
                          " AND mailman_status IN ('queued', 'sent', 'acknowledged')", (status, iso(now), request_id))
        if result is not None and status in ("conflict", "failed"):
            # Mailman did not take the command (already a member or pending, banned, bad address): the
            # Secretariat hears of it, as with a REST 409.
            request = workflow.get_request(bot, request_id)
            bot.store.audit(f"mailman-{status}", at=now, request_id=request_id, message_row=incoming.row,
                            said=result.line)
            bot.outbox.queue_mail(purpose="mailman-conflict", template="mailman_conflict.txt",
                                  context={"address": request["requester"], "request_id": request_id,
                                           "said": result.line, "list_address": bot.config.mailman.list},
                                  to=[bot.secretariat], request_id=request_id)
        return Outcome(incoming.cls.detail, request_id, extra={"mailman_result": result.state} if result else {})


# What a results mail says about our subscribe command -> the request's Mailman status.
MAILMAN_STATES = {"confirmation-sent": "acknowledged", "subscribed": "member", "held": "held",
                  "member": "conflict", "pending": "conflict", "refused": "failed"}


class OtherHandler:
    """A human wrote something that is not a request: one short help reply per day."""

    @staticmethod
    def prepare(bot: Bot, incoming: Incoming) -> None:
        return None

    @staticmethod
    def commit(bot: Bot, incoming: Incoming) -> Outcome:
        if incoming.cls.detail in ("no-sender",):
            return Outcome("no-sender")
        sent = _limited_reply(bot, incoming, purpose="help", template="help.txt",
                              context={**_base_context(bot), "detail": incoming.cls.detail})
        return Outcome("help-sent" if sent else "help-suppressed")


HANDLERS: dict[Kind, Any] = {
    Kind.REQUEST: RequestHandler,
    Kind.REPLY: ReplyHandler,
    Kind.AUTOMATED: AutomatedHandler,
    Kind.MAILMAN: MailmanHandler,
    Kind.OTHER: OtherHandler,
}
