"""Classifying one inbound message: who wrote it and what kind of answer, if any, it may get.

Pure: no I/O, no clock, no store. Owns the decision *what kind of mail is this* for every message in the
bot's mailbox; it never decides what to do about a request or a reply (that is the caller's, with the
token, the sender checks and the store). Threading headers and subjects only ever choose between kinds of
mail that get no action or a help text: they never make a message an approval.

The rules, first match wins (the order is the point: each rule shields the later ones from mail they must
never see):

1. No usable From address (none, no "@", no dotted domain) -> AUTOMATED "no-sender". Nobody to answer;
   the caller records it. This comes first even for a bounce whose From is a bare "MAILER-DAEMON".
2. Our own mail: From is the bot address or a bot+...@ sub-address -> AUTOMATED "own-mail"; or it carries
   our loop marker `X-Secirbot-Loop` -> AUTOMATED "loop". Checked before anything that could answer.
3. Mailman's mail for our list (sender is one of the list's own addresses, or `X-Mailman-Version` together
   with our List-Id / our -owner address / the list's domain): a list post (From the posting address or a
   `List-Post` header, which Mailman 3 puts on posts only) -> AUTOMATED "list-traffic"; otherwise MAILMAN
   "command-results", "confirmation-notice", "owner-notice" or "user-notice" (welcome, goodbye, held post,
   replybot...). Before rule 5 because every Mailman 3 notice carries Precedence/List-Id, which would
   otherwise make it anonymous "list-traffic".
4. Bounces and reports. ARF abuse reports (report-type=feedback-report) and MDNs (disposition-notification:
   read receipts, Dovecot's "Automatically rejected mail") -> AUTOMATED "feedback-report". A bounce
   candidate is a DSN (multipart/report; delivery-status), or From mailer-daemon@ (any subject), or From
   postmaster@ / a null Return-Path with bounce wording in the Subject, or an X-Failed-Recipients header.
   Candidates -> AUTOMATED "bounce" (with the permanently failed recipients flufl.bounce finds; flufl runs
   only on candidates, as it misreads ordinary replies), "delay-notice" (DSN Action: delayed only, or only
   transient failures), "delivery-report" (a DSN that reports no failure at all). Before rule 5 because
   bounces carry Auto-Submitted too and we want the failed recipients.
5. Auto-replies (RFC 3834 headers, vendor headers, out-of-office subjects in many languages) ->
   AUTOMATED "auto-reply"; other lists' mail (List-Id, List-Post, List-Unsubscribe, Precedence: list,
   X-Mailman-Version) -> AUTOMATED "list-traffic". An out-of-office sent to a token address keeps the token,
   so the caller can link it to the approval it answers (for escalation), never to decide it.
6. Mail to a token address bot+TOKEN@ from a human -> REPLY "token-reply".
7. A new request (`is_request_text`) -> REQUEST "subscribe".
8. A human reply threaded to us (reply prefix in the Subject, or In-Reply-To/References naming a
   Message-ID of the bot's domain) without a token -> OTHER "threaded-without-token" (the help text tells
   them to answer the approval mail itself).
9. Anything else -> OTHER "help".

`token` is filled in whenever a recipient is a token address, whatever the kind. MAILMAN and AUTOMATED are
routing hints, not authentication: anyone can write a From: or an X-Mailman-Version header, so the caller
may record and link such mail but must never act on its content as if Mailman or a server had said it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from enum import StrEnum

from flufl.bounce import all_failures

from secirbot.message import InboundMail
from secirbot.tokens import find_token

# Must equal secirbot.compose.LOOP_HEADER (kept here so that classification imports nothing heavy).
LOOP_HEADER = "X-Secirbot-Loop"


class Kind(StrEnum):
    REQUEST = "request"      # a human asking to join
    REPLY = "reply"          # a human's answer to a token address bot+TOKEN@domain
    AUTOMATED = "automated"  # never gets an answer
    MAILMAN = "mailman"      # Mailman's own mail about our commands and our list
    OTHER = "other"          # a human who wrote something else (one help reply per day)


@dataclass(frozen=True)
class Classification:
    kind: Kind
    detail: str                     # the rule that decided, e.g. "auto-reply", "bounce", "token-reply"
    token: str | None = None        # from a bot+TOKEN@ recipient, whatever the kind: links, never decides
    bounced: tuple[str, ...] = ()   # permanently failed recipients of a bounce, lower-cased, sorted
    signals: tuple[str, ...] = ()   # the headers/features that fired, for the audit


# --- Requests -------------------------------------------------------------------------------------------

# English only, on purpose: the list and its help text are English; the words Mailman itself takes as
# commands (subscribe, join) plus the nouns people use for it. "unsubscribe" does not match (\b).
_REQUEST_WORDS = re.compile(r"\b(?:subscribe|subscription|join|joining|membership)\b", re.IGNORECASE)

# Reply and forward prefixes of common clients (Outlook localisations, Gmail, Apple Mail, Thunderbird...),
# optionally behind list tags like "[secir]" and with counters like "Re[2]:".
_REPLY_PREFIXES = (
    r"re|aw|sv|vs|antw|antwort|rif|res|odp|vá|ynt|ответ|отв|回复|回覆|答复|返信"
)
_FORWARD_PREFIXES = r"fwd?|wg|tr|rv|enc|doorst|vb|pd|vl|fs|pfw|пересл|转发|転送"
_TAGS = r"^\s*(?:\[[^\]]*\]\s*)*"
_REPLY_SUBJECT = re.compile(rf"{_TAGS}(?:{_REPLY_PREFIXES})\s*(?:\[\d+\]|\(\d+\))?\s*[:：]", re.IGNORECASE)
_FORWARD_SUBJECT = re.compile(rf"{_TAGS}(?:{_FORWARD_PREFIXES})\s*(?:\[\d+\]|\(\d+\))?\s*[:：]", re.IGNORECASE)

# Where the sender's own words end: quoted text, attribution lines, forwarded/original-message blocks,
# Outlook's header block without ">" quotes, and signatures. Only the text above this is read.
_QUOTE_START = re.compile(
    r"^(?:>|-{2,}|_{5,}|\*{5,}"
    r"|(?:from|von|de|da|van|fra|från|od|от|发件人|寄件者|差出人|sent|gesendet|envoyé)\s*:"
    r"|begin forwarded message|forwarded message|original message)",
    re.IGNORECASE,
)
_ATTRIBUTION_END = re.compile(
    r"(?:wrote|schrieb|écrit|escribió|scritto|skrev|kirjoitti|napisał\(a\)|napisał|написал\(а\)|написал"
    r"|escreveu|geschreven|написа|писал)\s*:?\s*$",
    re.IGNORECASE,
)
# First half of an attribution wrapped onto two lines: a lead word, a date, or a weekday ("ср, 30 апр.").
_ATTRIBUTION_LEAD = re.compile(
    r"^(?:(?:on|am|le|el|il|em|op|den|dnia|w dniu|quoting|zitat von)\s|\d|\w{2,3}\.?,\s)", re.IGNORECASE)
_REQUEST_LINES = 5
# Bounds that keep every regex here linear in practice on hostile input: the new text is at the top, a
# request word is near the start of its line, and no real Subject is longer.
_BODY_SCAN_CHARS = 20_000
_LINE_CHARS = 1_000
_SUBJECT_CHARS = 1_000
_LINK_PREFIXES = ("http:", "https:", "mailto:", "<http", "<mailto")


def _own_words(line: str) -> str:
    """The line without addresses and links: "join@lists.example.org" must not read as "join"."""
    return " ".join(word for word in line.split()
                    if "@" not in word and not word.lower().startswith(_LINK_PREFIXES))


def is_request_text(subject: str, text: str | None) -> bool:
    """True if the sender's own words ask to join: "subscribe", "subscription", "join", "joining" or
    "membership" as a word in the Subject, or in the first 5 non-empty lines of the new text.

    The Subject counts only when it is the sender's own: a reply ("Re:", "AW:", "SV:"...) or a forward
    ("Fwd:", "WG:"...) carries someone else's subject, typically our own mail's ("Your request to join"),
    and replying to that is not a new request. Body lines are read up to the first quote, attribution,
    forwarded block or signature; e-mail addresses and links in them are ignored.
    """
    subject = subject[:_SUBJECT_CHARS]
    own_subject = bool(subject) and not (_REPLY_SUBJECT.match(subject) or _FORWARD_SUBJECT.match(subject))
    if own_subject and _REQUEST_WORDS.search(_own_words(subject)):
        return True
    return any(_REQUEST_WORDS.search(line) for line in _new_text_lines(text or ""))


def _new_text_lines(text: str) -> list[str]:
    raw_lines = text[:_BODY_SCAN_CHARS].splitlines()
    found: list[str] = []
    for index, raw in enumerate(raw_lines):
        line = raw[:_LINE_CHARS].strip()
        if not line:
            continue
        following = raw_lines[index + 1][:_LINE_CHARS].strip() if index + 1 < len(raw_lines) else ""
        # An attribution ("On Mon, ... X <a@b> wrote:") is often wrapped onto two lines.
        if (_QUOTE_START.match(line) or _ATTRIBUTION_END.search(line)
                or (_ATTRIBUTION_LEAD.match(line) and _ATTRIBUTION_END.search(following))):
            break
        found.append(_own_words(line))
        if len(found) == _REQUEST_LINES:
            break
    return found


_LINE_BREAK_TAGS = ("br", "/p", "p", "/div", "div", "/tr", "/li", "/h1", "/h2", "/h3", "/h4")
_INVISIBLE_TAGS = ("style", "script", "head", "title")


def _html_text(markup: str) -> str:
    """Rough text of an HTML body, good enough to read its first lines (used only without text/plain).
    A single left-to-right pass: regexes over hostile markup ("<<<<...") backtrack quadratically."""
    markup = markup[:_BODY_SCAN_CHARS]
    out: list[str] = []
    skip_until = ""
    pos = 0
    while pos < len(markup):
        start = markup.find("<", pos)
        if start < 0:
            if not skip_until:
                out.append(markup[pos:])
            break
        end = markup.find(">", start)
        if end < 0:
            break
        if not skip_until:
            out.append(markup[pos:start])
        name = markup[start + 1:end].strip().split(None, 1)[0].lower() if markup[start + 1:end].strip() else ""
        if skip_until and name == skip_until:
            skip_until = ""
        elif not skip_until and name in _INVISIBLE_TAGS:
            skip_until = "/" + name
        elif name.rstrip("/") in _LINE_BREAK_TAGS:
            out.append("\n")
        pos = end + 1
    return html.unescape("".join(out))


# --- Mailman --------------------------------------------------------------------------------------------

# Mailman 3 aliases of a list: mailman/mta/aliases.py SUBDESTINATIONS; "admin" is Mailman 2.1's old
# -admin (bounces) address. -bounces and -confirm also come VERP'd with "+suffix".
_LIST_SUBADDRESSES = frozenset(
    {"request", "bounces", "owner", "confirm", "join", "leave", "subscribe", "unsubscribe", "admin"})
_SITE_LOCALS = frozenset({"mailman", "mailman-bounces", "mailman-owner", "mailman-request"})

# (pattern on the decoded Subject, detail, where it comes from in Mailman's source)
_MAILMAN_SUBJECTS: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), detail, source) for pattern, detail, source in (
        # MM3 runners/command.py CommandRunner._dispose (From LIST-bounces@);
        # MM2.1 Mailman/Queue/CommandRunner.py (From LIST-owner@).
        (r"^The results of your email commands?$", "command-results", "runners/command.py"),
        # MM3.3 app/subscriptions.py _handle_confirmation_needed_events, templates
        # list:user:action:subscribe / :unsubscribe / :invite (From LIST-confirm+TOKEN@).
        (r"^Your confirmation is needed to (?:join|leave) the \S+ mailing list\.?$", "confirmation-notice",
         "app/subscriptions.py list:user:action:subscribe|unsubscribe"),
        (r"^You have been invited to join the \S+ mailing list\.?$", "confirmation-notice",
         "app/subscriptions.py list:user:action:invite"),
        # MM2.1 MailList.GetConfirmJoinSubject/GetConfirmLeaveSubject with VERP_CONFIRMATIONS.
        (r"^Your confirmation is required to (?:join|leave) the .+ mailing list$", "confirmation-notice",
         "MM2.1 MailList.GetConfirmJoinSubject"),
        # MM2.1 without VERP confirmations, and MM3 before 3.2.
        (r"^confirm [0-9a-z]+$", "confirmation-notice", "confirm <token>"),
        # MM3 app/subscriptions.py _step_get_moderator_approval, list:admin:action:subscribe|unsubscribe
        # (From and To LIST-owner@).
        (r"^New (?:un)?subscription request to .+ from .+$", "owner-notice",
         "app/subscriptions.py list:admin:action:subscribe|unsubscribe"),
        # MM3 app/notifications.py send_admin_subscription_notice (list:admin:notice:subscribe) and
        # app/membership.py delete_member (list:admin:notice:unsubscribe); OwnerNotification, To LIST-owner@.
        (r"(?:un)?subscription notification$", "owner-notice",
         "app/notifications.py list:admin:notice:subscribe|unsubscribe"),
        # MM3 chains/hold.py HoldChain._process, list:admin:action:post.
        (r"^\S+ post from .+ requires approval$", "owner-notice", "chains/hold.py list:admin:action:post"),
        # MM3 app/notifications.py send_admin_disable_notice / send_admin_removal_notice.
        (r"subscription disabled on .+$", "owner-notice", "app/notifications.py list:admin:notice:disable"),
        (r"unsubscribed from .+ mailing list due to bounces$", "owner-notice",
         "app/notifications.py list:admin:notice:removal"),
        # MM3 commands/cli_notify.py and MM2.1 cron/checkdbs.
        (r"moderator request\(s\) waiting$", "owner-notice", "cli_notify / checkdbs"),
        # Notices to a subscriber: app/notifications.py send_welcome_message (list:user:notice:welcome),
        # send_goodbye_message (list:user:notice:goodbye), send_user_disable_warning; chains/hold.py
        # (list:user:notice:hold); handlers/replybot.py (X-Mailer: The Mailman Replybot).
        (r'^Welcome to the ".+" mailing list', "user-notice", "list:user:notice:welcome"),
        (r"^You have been unsubscribed from the .+ mailing list$", "user-notice", "list:user:notice:goodbye"),
        (r"^Your message to \S+ awaits moderator approval$", "user-notice", "list:user:notice:hold"),
        (r"^Your subscription for .+ mailing list has been disabled$", "user-notice",
         "list:user:notice:warning"),
        (r'^Auto-response for your message to the ".+" mailing list$', "user-notice", "handlers/replybot.py"),
    )
)
# First line of the results body (MM3 runners/command.py Results; MM2.1 says the same, then more), for
# results mails whose Subject was translated.
_RESULTS_BODY = re.compile(r"^\s*The results of your email commands? (?:are|is) provided below", re.IGNORECASE)


def _split(address: str) -> tuple[str, str]:
    local, _, domain = address.strip().lower().rpartition("@")
    return local, domain


def _mailman_role(address: str, list_local: str, list_domain: str) -> str | None:
    """Which of our list's own addresses this is ("post", "request", "owner"... "site"), or None."""
    local, domain = _split(address)
    if domain != list_domain:
        return None
    if local == list_local:
        return "post"
    if local in _SITE_LOCALS:
        return "site"
    if local.startswith(list_local + "-"):
        sub = local[len(list_local) + 1:].split("+", 1)[0]
        if sub in _LIST_SUBADDRESSES:
            return sub
    return None


def _classify_mailman(mail: InboundMail, list_address: str, token: str | None) -> Classification | None:
    list_local, list_domain = _split(list_address)
    from_role = _mailman_role(mail.from_addr or "", list_local, list_domain)
    version = mail.header("X-Mailman-Version")
    list_id = mail.header("List-Id").lower()
    # Mailman 3 handlers/rfc_2369.py: List-Id is "<list_name.mail_host>", possibly behind a description.
    ours_by_id = f"<{list_local}.{list_domain}>" in list_id
    to_owner = any(_mailman_role(a, list_local, list_domain) == "owner" for a in mail.recipients)
    if from_role is None and not (version and (ours_by_id or to_owner or mail.from_domain == list_domain)):
        return None
    signals: list[str] = []
    if from_role:
        signals.append(f"From: list address ({from_role})")
    if version:
        signals.append(f"X-Mailman-Version: {version[:20]}")
    # Mailman 3 puts List-Post on list posts only: notices are enqueued with reduced_list_headers
    # (email/message.py UserNotification._enqueue; handlers/rfc_2369.py).
    list_post = mail.header("List-Post")
    if from_role == "post" or list_post:
        if list_post:
            signals.append("List-Post")
        return Classification(Kind.AUTOMATED, "list-traffic", token, signals=tuple(signals))
    subject = mail.subject[:_SUBJECT_CHARS].strip()
    for pattern, detail, source in _MAILMAN_SUBJECTS:
        if pattern.search(subject):
            signals.append(f"Subject: Mailman {source}")
            return Classification(Kind.MAILMAN, detail, token, signals=tuple(signals))
    if _RESULTS_BODY.match(mail.text or ""):
        signals.append("Body: Mailman results")
        return Classification(Kind.MAILMAN, "command-results", token, signals=tuple(signals))
    if from_role == "confirm":
        return Classification(Kind.MAILMAN, "confirmation-notice", token, signals=tuple(signals))
    if to_owner or from_role == "owner":
        signals.append("To/From: list owner address")
        return Classification(Kind.MAILMAN, "owner-notice", token, signals=tuple(signals))
    return Classification(Kind.MAILMAN, "user-notice", token, signals=tuple(signals))


# --- Bounces and reports --------------------------------------------------------------------------------

_DAEMON_LOCALS = frozenset({"mailer-daemon", "mailer_daemon", "mailerdaemon", "mail-daemon"})
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|not (?:be )?delivered|delivery (?:status notification|failure|failed|has failed"
    r"|problem|notification)|returned mail|mail delivery (?:failed|failure|system)|failure notice"
    r"|failure delivery|delivery failure|non[- ]?delivery|mail failure|bounce|returned to sender"
    r"|could not send|delivery delayed|delayed mail|warning: message|nicht zustellbar|unzustellbar"
    r"|non remis|onbestelbaar|no se pudo entregar|impossibile recapitare|no entregado",
    re.IGNORECASE,
)
_DELAY_SUBJECT = re.compile(
    r"\(delay\)|delivery delayed|delayed mail|could not send message for past|warning: message .*delayed"
    r"|still being retried",
    re.IGNORECASE,
)
_NOT_FAILED_ACTIONS = frozenset({"delayed", "delivered", "relayed", "expanded"})


def _report_parts(msg: Message) -> Iterator[Message]:
    """The parts of the message itself, not those of any message attached to it (the returned original
    of a bounce may itself be a report)."""
    yield msg
    if msg.get_content_maintype() == "multipart" and isinstance(msg.get_payload(), list):
        for part in msg.get_payload():
            if isinstance(part, Message):
                yield from _report_parts(part)


def _dsn_actions(msg: Message) -> set[str]:
    actions: set[str] = set()
    for part in _report_parts(msg):
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        for block in blocks if isinstance(blocks, list) else ():
            if isinstance(block, Message):
                for value in block.get_all("Action") or []:
                    # RFC 3464 action-value, possibly followed by a comment.
                    words = str(value).split()
                    if words:
                        actions.add(words[0].lower())
    return actions


def _failed_recipients(mail: InboundMail, signals: list[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(transient, permanent) failed recipients, lower-cased, as flufl.bounce sees them (its Exim detector
    also reads X-Failed-Recipients)."""
    try:
        temporary, permanent = all_failures(mail.message)
    except Exception as exc:  # a detector choking on a malformed bounce must not stop classification
        signals.append(f"flufl.bounce error: {type(exc).__name__}")
        return frozenset(), frozenset()
    temp = frozenset(_clean_address(a) for a in temporary) - {""}
    perm = frozenset(_clean_address(a) for a in permanent) - {""}
    signals.append(f"flufl.bounce: {len(perm)} permanent, {len(temp)} transient")
    return temp, perm


def _clean_address(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    text = text.strip().strip("<>").strip().lower()
    return text if "@" in text else ""


def _classify_report(mail: InboundMail, token: str | None) -> Classification | None:
    msg = mail.message
    signals: list[str] = []
    report_type = ""
    if mail.content_type == "multipart/report":
        report_type = str(msg.get_param("report-type") or "").strip().lower()
        signals.append(f"Content-Type: multipart/report; report-type={report_type or '?'}")
    if report_type in ("feedback-report", "disposition-notification"):
        return Classification(Kind.AUTOMATED, "feedback-report", token, signals=tuple(signals))

    from_local = _split(mail.from_addr or "")[0]
    subject = mail.subject[:_SUBJECT_CHARS]
    bounce_words = bool(_BOUNCE_SUBJECT.search(subject))
    actions = _dsn_actions(msg) if mail.content_type == "multipart/report" else set()
    candidate = report_type == "delivery-status" or bool(actions)
    if from_local in _DAEMON_LOCALS:
        # A mailer-daemon is never a person, whatever its subject says.
        signals.append("From: mailer-daemon")
        candidate = True
    elif from_local == "postmaster" and bounce_words:
        # A postmaster may be a person (a ccTLD's postmaster may well want to join): only with bounce
        # wording.
        signals.append("From: postmaster")
        candidate = True
    return_path = mail.header("Return-Path").lower()
    if return_path in ("<>", "<mailer-daemon>") and bounce_words:
        signals.append(f"Return-Path: {return_path}")
        candidate = True
    if msg.get("X-Failed-Recipients") is not None:
        signals.append("X-Failed-Recipients header")
        candidate = True
    if not candidate:
        return None
    if bounce_words:
        signals.append("Subject: bounce wording")
    if actions:
        signals.append("DSN Action: " + ",".join(sorted(actions)))
        if actions <= _NOT_FAILED_ACTIONS:
            detail = "delay-notice" if "delayed" in actions else "delivery-report"
            return Classification(Kind.AUTOMATED, detail, token, signals=tuple(signals))
    temporary, permanent = _failed_recipients(mail, signals)
    if not permanent and "failed" not in actions and (temporary or _DELAY_SUBJECT.search(subject)):
        return Classification(Kind.AUTOMATED, "delay-notice", token, signals=tuple(signals))
    if not permanent:
        signals.append("no failed recipient found")
    return Classification(Kind.AUTOMATED, "bounce", token, tuple(sorted(permanent)), tuple(signals))


# --- Auto-replies and other automated mail --------------------------------------------------------------

# Out-of-office subjects as clients write them (Outlook/Exchange localisations, iCloud, Gmail, Zimbra...),
# at the start of the Subject only: a human subject may mention an absence further in.
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*[\[(]?\s*(?:"
    r"automatic reply|auto[- ]?reply|auto[- ]?respon|autosvar|automatisk svar|automatisch antwoord"
    r"|automatische antwort|abwesenheitsnotiz|abwesend|réponse automatique|respuesta automática"
    r"|resposta automática|risposta automatica|fuori sede|automaattinen vastaus|frånvaro|fravær|fravaer"
    r"|automatyczna odpowiedź|automatická odpověď|automatikus válasz|otomatik yanıt|αυτόματη απάντηση"
    r"|автоответ|автоматический ответ|自動応答|自动回复|자동 회신|out of (?:the )?office|away from (?:the )?office"
    r"|vacation reply|auto\s*:"  # "AUTO:" is Lotus Notes / HCL Domino
    r")",
    re.IGNORECASE,
)
_AUTO_REPLY_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder")


def _classify_auto(mail: InboundMail, token: str | None) -> Classification | None:
    strong: list[str] = []
    weak: list[str] = []
    listy: list[str] = []
    auto_submitted = mail.header("Auto-Submitted").strip().lower()
    if auto_submitted and not re.match(r"no\b", auto_submitted):
        (strong if auto_submitted.startswith("auto-replied") else weak).append(
            f"Auto-Submitted: {auto_submitted[:40]}")
    for name in _AUTO_REPLY_HEADERS:
        value = mail.message.get(name)
        if value is not None and str(value).strip().lower() not in ("no", "false", "0"):
            strong.append(name)
    if _AUTO_REPLY_SUBJECT.match(mail.subject[:_SUBJECT_CHARS]):
        strong.append(f"Subject: {mail.subject[:40]}")
    precedence = mail.header("Precedence").strip().lower()
    if precedence in ("bulk", "junk", "auto_reply"):
        weak.append(f"Precedence: {precedence}")
    elif precedence == "list":
        listy.append("Precedence: list")
    if mail.message.get("X-Auto-Response-Suppress") is not None:
        # Exchange puts it on its auto-replies; a person's client does not.
        weak.append("X-Auto-Response-Suppress")
    if mail.message.get("Return-Path") is not None and mail.header("Return-Path").strip() == "<>":
        weak.append("Return-Path: <>")
    for name in ("List-Id", "List-Post", "List-Unsubscribe", "X-Mailman-Version"):
        if mail.message.get(name) is not None:
            listy.append(name)
    if strong:
        return Classification(Kind.AUTOMATED, "auto-reply", token, signals=tuple(strong + weak + listy))
    if listy:
        return Classification(Kind.AUTOMATED, "list-traffic", token, signals=tuple(listy + weak))
    if weak:
        return Classification(Kind.AUTOMATED, "auto-reply", token, signals=tuple(weak))
    return None


# --- The classifier -------------------------------------------------------------------------------------

def _is_own(address: str, bot_address: str) -> bool:
    local, domain = _split(address)
    bot_local, bot_domain = _split(bot_address)
    return domain == bot_domain and (local == bot_local or local.startswith(bot_local + "+"))


def _threaded_to_us(mail: InboundMail, bot_domain: str) -> str | None:
    if _REPLY_SUBJECT.match(mail.subject[:_SUBJECT_CHARS]):
        return "Subject: reply prefix"
    needle = f"@{bot_domain}>"
    for name in ("In-Reply-To", "References"):
        if any(needle in value.lower() for value in mail.headers(name)):
            return f"{name}: our Message-ID"
    return None


def classify(mail: InboundMail, *, bot_address: str, list_address: str) -> Classification:
    """Classify one parsed inbound message. The rules and their order are in the module docstring."""
    token = find_token(mail.recipients, bot_address)
    from_addr = mail.from_addr
    from_local, from_domain = _split(from_addr or "")
    # 1. Nobody to answer.
    if not from_addr or not from_local or "." not in from_domain:
        return Classification(Kind.AUTOMATED, "no-sender", token, signals=("From: none usable",))
    # 2. Our own mail, or mail that carries our loop marker back to us.
    if _is_own(from_addr, bot_address):
        return Classification(Kind.AUTOMATED, "own-mail", token, signals=("From: bot address",))
    if mail.message.get(LOOP_HEADER) is not None:
        return Classification(Kind.AUTOMATED, "loop", token, signals=(f"{LOOP_HEADER} present",))
    # 3.-5. Machines.
    machine = (_classify_mailman(mail, list_address, token)
               or _classify_report(mail, token)
               or _classify_auto(mail, token))
    if machine is not None:
        return machine
    # 6. A person answering one approval request.
    if token is not None:
        return Classification(Kind.REPLY, "token-reply", token, signals=("To: token address",))
    # 7. A person asking to join.
    text = mail.text if mail.text is not None else _html_text(mail.html or "")
    if is_request_text(mail.subject, text):
        return Classification(Kind.REQUEST, "subscribe", signals=("request words",))
    # 8.-9. A person writing something else: only the wording of the help reply differs.
    threaded = _threaded_to_us(mail, _split(bot_address)[1])
    if threaded:
        return Classification(Kind.OTHER, "threaded-without-token", signals=(threaded,))
    return Classification(Kind.OTHER, "help")
