"""Classifying one inbound message: who wrote it and what kind of answer, if any, it may get.

Pure: no I/O, no clock, no store. Owns the decision *what kind of mail is this* for every message in the
bot's mailbox; it never decides what to do about a request or a reply (that is the caller's, with the
token, the sender checks and the store). Threading headers and subjects only ever choose between kinds of
mail that get no action or a help text: they never make a message an approval.

The rules, first match wins (the order is the point: each rule shields the later ones from mail they must
never see):

1. No usable From address (none, not exactly one mailbox as `message.strict_from` reads it, no dotted
   domain) -> AUTOMATED "no-sender". Nobody to answer; the caller records it. This comes first even for a
   bounce whose From is a bare "MAILER-DAEMON". Exception: a human-looking mail on a token address whose
   From names several mailboxes is a REPLY, so that the forgery attempt is refused and reported.
2. Our own mail: From is the bot address or a bot+...@ sub-address -> AUTOMATED "own-mail"; or it carries
   our loop marker `X-Secirbot-Loop` -> AUTOMATED "loop". Checked before anything that could answer.
3. Mailman's mail for our list (sender is one of the list's own addresses, or `X-Mailman-Version` together
   with our List-Id / our -owner address / the list's domain): a list post (From the posting address or a
   `List-Post` header, which Mailman 3 puts on posts only) -> AUTOMATED "list-traffic"; otherwise MAILMAN
   "command-results", "confirmation-notice", "owner-notice" or "user-notice" (welcome, goodbye, held post,
   replybot...). Before rule 5 because every Mailman 3 notice carries Precedence/List-Id, which would
   otherwise make it anonymous "list-traffic".
4. Bounces and reports, by class, whatever the MTA, language, sender address or subject encoding (the
   signs are data: secirbot/data/machine_mail.yaml). Feedback: ARF (report-type=feedback-report), MDNs
   (read receipts, Dovecot's "Automatically rejected mail"), TLS-RPT, X-ARF, DMARC aggregate reports, and
   non-ARF abuse or feedback-loop reports (an abuse subject or opening line with a second sign) ->
   AUTOMATED "feedback-report". A bounce candidate has a sure sign (multipart/report, a
   message/delivery-status part, From or Return-Path mailer-daemon@, X-Failed-Recipients, an NDR header)
   or two that may each be a person's: a bounce subject (any of ~30 languages), a DSN opening line in the
   first lines of the body, a gateway sender (postmaster@, mailer@, a product's own name), an attached
   original, a null Return-Path. Candidates -> AUTOMATED "bounce" (with the permanently failed recipients
   flufl.bounce finds; flufl runs only on candidates, as it misreads ordinary replies), "delay-notice" (DSN
   Action: delayed only, or only transient failures, or delay wording), "delivery-report" (a DSN that
   reports no failure at all). Before rule 5 because bounces carry Auto-Submitted too and we want the
   failed recipients.
5. Auto-replies: RFC 3834 and vendor headers, out-of-office subject prefixes in ~50 languages (a subject
   alone yields to a text that asks to join), then, with no other sign, a strong out-of-office phrase ("I am
   out of the office", "je suis absent", "estaré fuera de la oficina"...) in the first 10 lines of the
   sender's new text, never when those lines say APPROVE or DENY or ask to join -> AUTOMATED "auto-reply".
   Other lists' mail and list-server notices (List-*, X-Mailman-Version, Sympa, LISTSERV, Majordomo, fml,
   Google Groups, mlmmj headers or program addresses, loop alerts) -> AUTOMATED "list-traffic". Weak signs
   (Precedence: bulk/junk/auto_reply, X-Auto-Response-Suppress, a null Return-Path) -> "auto-reply";
   no-reply senders, or two hints together (Feedback-ID, X-Loop...) -> "notification". An out-of-office
   sent to a token address keeps the token, so the caller can link it to the approval it answers (for
   escalation), never to decide it.
6. Mail to a token address bot+TOKEN@ from a human -> REPLY "token-reply".
7. A member leaving (`is_leave_text`: `leave` or `unsubscribe` alone) -> MEMBERSHIP "leave"; a contact
   asking to remove a member (`removal_target`: `remove ADDRESS` first) -> MEMBERSHIP "remove"; else a new request
   (`is_request_text`) -> REQUEST "subscribe".
8. A human reply threaded to us (reply prefix in the Subject, or In-Reply-To/References naming a
   Message-ID of the bot's domain) without a token -> OTHER "threaded-without-token" (the help text tells
   them to answer the approval mail itself).
9. Anything else -> OTHER "help".

`token` is filled in whenever a recipient is a token address, whatever the kind. MAILMAN and AUTOMATED are
routing hints, not authentication: anyone can write a From: or an X-Mailman-Version header, so the caller
may record and link such mail but must never act on its content as if Mailman or a server had said it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from enum import StrEnum
from importlib import resources
from typing import Any

import yaml

from secirbot.message import InboundMail
from secirbot.newtext import html_to_text, new_text
from secirbot.tokens import find_token

# Must equal secirbot.compose.LOOP_HEADER (kept here so that classification imports nothing heavy).
LOOP_HEADER = "X-Secirbot-Loop"


class Kind(StrEnum):
    REQUEST = "request"  # a human asking to join
    REPLY = "reply"  # a human's answer to a token address bot+TOKEN@domain
    AUTOMATED = "automated"  # never gets an answer
    MAILMAN = "mailman"  # Mailman's own mail about our commands and our list
    MEMBERSHIP = "membership"  # a member leaving, or an IANA contact asking to remove a member
    OTHER = "other"  # a human who wrote something else (one help reply per day)


@dataclass(frozen=True)
class Classification:
    kind: Kind
    detail: str  # the rule that decided, e.g. "auto-reply", "bounce", "token-reply"
    token: str | None = None  # from a bot+TOKEN@ recipient, whatever the kind: links, never decides
    bounced: tuple[str, ...] = ()  # permanently failed recipients of a bounce, lower-cased, sorted
    signals: tuple[str, ...] = ()  # the headers/features that fired, for the audit


# --- Requests -------------------------------------------------------------------------------------------

# English only, on purpose: the list and its help text are English; the words Mailman itself takes as
# commands (subscribe, join) plus the nouns people use for it. "unsubscribe" does not match (\b).
_REQUEST_WORDS = re.compile(r"\b(?:subscribe|subscription|join|joining|membership)\b", re.IGNORECASE)

# Reply and forward prefixes of common clients (Outlook localisations, Gmail, Apple Mail, Thunderbird...),
# optionally behind list tags like "[secir]" and with counters like "Re[2]:".
_REPLY_PREFIXES = r"re|aw|sv|vs|antw|antwort|rif|res|odp|vá|ynt|ответ|отв|回复|回覆|答复|返信"
_FORWARD_PREFIXES = r"fwd?|wg|tr|rv|enc|doorst|vb|pd|vl|fs|pfw|пересл|转发|転送"
_TAGS = r"^\s*(?:\[[^\]]*\]\s*)*"
_REPLY_SUBJECT = re.compile(rf"{_TAGS}(?:{_REPLY_PREFIXES})\s*(?:\[\d+\]|\(\d+\))?\s*[:：]", re.IGNORECASE)
_FORWARD_SUBJECT = re.compile(rf"{_TAGS}(?:{_FORWARD_PREFIXES})\s*(?:\[\d+\]|\(\d+\))?\s*[:：]", re.IGNORECASE)

_REQUEST_LINES = 5
# Bounds that keep every regex here linear in practice on hostile input: the new text is at the top, a
# request word is near the start of its line, and no real Subject is longer.
_BODY_SCAN_CHARS = 20_000
_LINE_CHARS = 1_000
_SUBJECT_CHARS = 1_000
_LINK_PREFIXES = ("http:", "https:", "mailto:", "<http", "<mailto")


def _own_words(line: str) -> str:
    """The line without addresses and links: "join@lists.example.org" must not read as "join"."""
    return " ".join(word for word in line.split() if "@" not in word and not word.lower().startswith(_LINK_PREFIXES))


def is_request_text(subject: str, new_text: str | None) -> bool:
    """True if the sender's own words ask to join: "subscribe", "subscription", "join", "joining" or
    "membership" as a word in the Subject, or in the first 5 non-empty lines of their new text (as
    `newtext` reads it: quotes, attributions, forwarded blocks and signatures already cut off).

    The Subject counts only when it is the sender's own: a reply ("Re:", "AW:", "SV:"...) or a forward
    ("Fwd:", "WG:"...) carries someone else's subject, typically our own mail's ("Your request to join"),
    and replying to that is not a new request. E-mail addresses and links in the lines are ignored.
    """
    subject = subject[:_SUBJECT_CHARS]
    own_subject = bool(subject) and not (_REPLY_SUBJECT.match(subject) or _FORWARD_SUBJECT.match(subject))
    if own_subject and _REQUEST_WORDS.search(_own_words(subject)):
        return True
    return any(_REQUEST_WORDS.search(line) for line in _first_lines(new_text or ""))


_LEAVE_LINE = re.compile(r"^\s*(?:leave|unsubscribe)\s*[.!]?\s*$", re.IGNORECASE)


def is_leave_text(subject: str, new_text: str | None) -> bool:
    """True if the sender's own Subject, or the first line of their new text, is `leave` or `unsubscribe`
    alone: a member leaving. Checked before the request words, which "unsubscribe" also contains."""
    subject = subject[:_SUBJECT_CHARS]
    own_subject = bool(subject) and not (_REPLY_SUBJECT.match(subject) or _FORWARD_SUBJECT.match(subject))
    if own_subject and _LEAVE_LINE.match(subject):
        return True
    first = _first_lines(new_text or "")[:1]
    return bool(first) and bool(_LEAVE_LINE.match(first[0]))


_REMOVE_LINE = re.compile(r"^\s*remove\s*:?\s+<?([^\s<>@]+@[^\s<>@]+?)>?\s*[.!]?\s*$", re.IGNORECASE)


def removal_target(new_text: str | None) -> str | None:
    """The address of a first line `remove ADDRESS` (an IANA contact asking to take a member off), or None."""
    first = (new_text or "")[:_BODY_SCAN_CHARS].strip().split("\n", 1)[0][:_LINE_CHARS]
    found = _REMOVE_LINE.match(first)
    return found.group(1) if found else None


def _first_lines(text: str) -> list[str]:
    found: list[str] = []
    for raw in text[:_BODY_SCAN_CHARS].splitlines():
        line = raw[:_LINE_CHARS].strip()
        if line:
            found.append(_own_words(line))
        if len(found) == _REQUEST_LINES:
            break
    return found


# --- Mailman --------------------------------------------------------------------------------------------

# Mailman 3 aliases of a list: mailman/mta/aliases.py SUBDESTINATIONS; "admin" is Mailman 2.1's old
# -admin (bounces) address. -bounces and -confirm also come VERP'd with "+suffix".
_LIST_SUBADDRESSES = frozenset(
    {"request", "bounces", "owner", "confirm", "join", "leave", "subscribe", "unsubscribe", "admin"}
)
_SITE_LOCALS = frozenset({"mailman", "mailman-bounces", "mailman-owner", "mailman-request"})

# (pattern on the decoded Subject, detail, where it comes from in Mailman's source)
_MAILMAN_SUBJECTS: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), detail, source)
    for pattern, detail, source in (
        # MM3 runners/command.py CommandRunner._dispose (From LIST-bounces@);
        # MM2.1 Mailman/Queue/CommandRunner.py (From LIST-owner@).
        (r"^The results of your email commands?$", "command-results", "runners/command.py"),
        # MM3.3 app/subscriptions.py _handle_confirmation_needed_events, templates
        # list:user:action:subscribe / :unsubscribe / :invite (From LIST-confirm+TOKEN@).
        (
            r"^Your confirmation is needed to (?:join|leave) the \S+ mailing list\.?$",
            "confirmation-notice",
            "app/subscriptions.py list:user:action:subscribe|unsubscribe",
        ),
        (
            r"^You have been invited to join the \S+ mailing list\.?$",
            "confirmation-notice",
            "app/subscriptions.py list:user:action:invite",
        ),
        # MM2.1 MailList.GetConfirmJoinSubject/GetConfirmLeaveSubject with VERP_CONFIRMATIONS.
        (
            r"^Your confirmation is required to (?:join|leave) the .+ mailing list$",
            "confirmation-notice",
            "MM2.1 MailList.GetConfirmJoinSubject",
        ),
        # MM2.1 without VERP confirmations, and MM3 before 3.2.
        (r"^confirm [0-9a-z]+$", "confirmation-notice", "confirm <token>"),
        # MM3 app/subscriptions.py _step_get_moderator_approval, list:admin:action:subscribe|unsubscribe
        # (From and To LIST-owner@).
        (
            r"^New (?:un)?subscription request to .+ from .+$",
            "owner-notice",
            "app/subscriptions.py list:admin:action:subscribe|unsubscribe",
        ),
        # MM3 app/notifications.py send_admin_subscription_notice (list:admin:notice:subscribe) and
        # app/membership.py delete_member (list:admin:notice:unsubscribe); OwnerNotification, To LIST-owner@.
        (
            r"(?:un)?subscription notification$",
            "owner-notice",
            "app/notifications.py list:admin:notice:subscribe|unsubscribe",
        ),
        # MM3 chains/hold.py HoldChain._process, list:admin:action:post.
        (r"^\S+ post from .+ requires approval$", "owner-notice", "chains/hold.py list:admin:action:post"),
        # MM3 app/notifications.py send_admin_disable_notice / send_admin_removal_notice.
        (r"subscription disabled on .+$", "owner-notice", "app/notifications.py list:admin:notice:disable"),
        (
            r"unsubscribed from .+ mailing list due to bounces$",
            "owner-notice",
            "app/notifications.py list:admin:notice:removal",
        ),
        # MM3 commands/cli_notify.py and MM2.1 cron/checkdbs.
        (r"moderator request\(s\) waiting$", "owner-notice", "cli_notify / checkdbs"),
        # Notices to a subscriber: app/notifications.py send_welcome_message (list:user:notice:welcome),
        # send_goodbye_message (list:user:notice:goodbye), send_user_disable_warning; chains/hold.py
        # (list:user:notice:hold); handlers/replybot.py (X-Mailer: The Mailman Replybot).
        (r'^Welcome to the ".+" mailing list', "user-notice", "list:user:notice:welcome"),
        (r"^You have been unsubscribed from the .+ mailing list$", "user-notice", "list:user:notice:goodbye"),
        (r"^Your message to \S+ awaits moderator approval$", "user-notice", "list:user:notice:hold"),
        (r"^Your subscription for .+ mailing list has been disabled$", "user-notice", "list:user:notice:warning"),
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
        sub = local[len(list_local) + 1 :].split("+", 1)[0]
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

# What machine mail says and who sends it is data: secirbot/data/machine_mail.yaml, one table per sign and
# language, each with its source. This section and the next only weigh the signs.
# libyaml's safe loader reads the 74 KB table in 16 ms, the pure-Python one in 200 ms: that was a fifth of the
# daemon's start. Same safe subset of YAML; tests/test_machine_mail.py checks both read the same tables.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MACHINE_MAIL_YAML = resources.files("secirbot").joinpath("data/machine_mail.yaml")
_TABLES: dict[str, Any] = yaml.load(MACHINE_MAIL_YAML.read_text(encoding="utf-8"), Loader=_YAML_LOADER)

# Bounds that keep the phrase search linear and small on hostile input: the signs are at the top.
_SCAN_CHARS = 20_000
_SCAN_LINE_CHARS = 1_000
_SCAN_SUBJECT_CHARS = 1_000
_REPORT_LINES = 15  # a DSN's own text says what it is in its first lines
_AUTO_REPLY_LINES = 10  # so does an out-of-office, after a greeting
_MAX_REPORT_PARTS = 500

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f\u180e"))
_QUOTES = str.maketrans(
    {
        "\u2019": "'",
        "\u2018": "'",
        "\u02bc": "'",
        "\u00b4": "'",
        "`": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u00ab": '"',
        "\u00bb": '"',
    }
)
_WHITE = re.compile(r"\s+")
# Scripts written without spaces between words: a phrase there matches inside a run of letters.
_UNSPACED = (
    (0x0E00, 0x0EFF),
    (0x1000, 0x109F),
    (0x1100, 0x11FF),
    (0x1780, 0x17FF),
    (0x2E80, 0xA4CF),
    (0xAC00, 0xD7AF),
    (0xF900, 0xFAFF),
    (0xFF00, 0xFFEF),
)
_GAP = "..."


def fold(text: str) -> str:
    """The form every phrase and every text is compared in: invisible characters (zero-width joiners, soft
    hyphens) removed, NFKC, case-folded, combining marks (accents) removed, curly quotes straight, white
    space runs as one space."""
    text = unicodedata.normalize("NFKC", text.translate(_INVISIBLE)).casefold().translate(_QUOTES)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return _WHITE.sub(" ", text).strip()


def _spaced(char: str) -> bool:
    return (char.isalnum() or char == "_") and not any(lo <= ord(char) <= hi for lo, hi in _UNSPACED)


@dataclass(frozen=True)
class _Phrase:
    label: str  # "lang: phrase", for the audit
    key: str  # a literal part, looked for first (a substring test is cheap)
    source: str  # the regular expression, compiled on the first text that holds the key

    @property
    def pattern(self) -> re.Pattern[str]:
        return _compiled(self.source)


# Compiling all 1,500 phrases took 130 ms of every start; most are never needed (their key never occurs).
# Unbounded, unlike re's own cache of 512, which the tables would overflow and thrash.
@functools.cache
def _compiled(source: str) -> re.Pattern[str]:
    return re.compile(source)


@dataclass(frozen=True)
class _Phrases:
    """One table of phrases: find() returns the label of the first that occurs in a folded text."""

    phrases: tuple[_Phrase, ...]

    def find(self, folded: str) -> str | None:
        for phrase in self.phrases:
            if phrase.key in folded and phrase.pattern.search(folded):
                return phrase.label
        return None


# A subject prefix may stand behind "[tags]" or an opening bracket: "[Auto-Reply] x", "(Out of office)".
_SUBJECT_LEAD = r"^(?:\[[^\]]{0,40}\] ?)*[\[(*]? ?"


def _phrases(groups: dict[str, list[str]], *, at_start: bool = False) -> _Phrases:
    compiled = []
    for lang, phrases in groups.items():
        for raw in phrases:
            folded = fold(raw)
            parts = [part.strip() for part in folded.split(_GAP)]
            body = r".{0,40}?".join(re.escape(part) for part in parts)
            left = r"(?<!\w)" if _spaced(folded[0]) else ""
            # A subject's decoded encoded-word may run into the next word ("ответApproval"): at the start
            # of a subject, a phrase of several words needs no boundary after it.
            right = r"(?!\w)" if _spaced(folded[-1]) and not (at_start and " " in folded) else ""
            lead = _SUBJECT_LEAD if at_start else ""
            compiled.append(_Phrase(f"{lang}: {raw}", max(parts, key=len), lead + left + body + right))
    return _Phrases(tuple(compiled))


def _by_language(table: dict[str, Any]) -> dict[str, list[str]]:
    return {lang: entry["phrases"] for lang, entry in table.items()}


def _names(values: list[str]) -> frozenset[str]:
    return frozenset(fold(value) for value in values)


_BOUNCE = _TABLES["bounce"]
_FEEDBACK = _TABLES["feedback"]
_DAEMON_LOCALS = _names(_BOUNCE["daemon_locals"]["locals"])
_GATEWAY_LOCALS = _names(_BOUNCE["gateway_locals"]["locals"])
_GATEWAY_PARTS = tuple(_names(_BOUNCE["gateway_locals"]["contains"]))
_GATEWAY_NAMES = _phrases({"name": _BOUNCE["gateway_names"]["names"]})
_BOUNCE_HEADERS = tuple(_BOUNCE["headers"]["names"])
_BOUNCE_SUBJECTS = _phrases(_by_language(_BOUNCE["subjects"]))
_DELAY_PHRASES = _phrases({"delay": _BOUNCE["delay_phrases"]["phrases"]})
_REPORT_OPENERS = _phrases({"dsn": _BOUNCE["body_openers"]["phrases"]})
_FEEDBACK_HEADERS = tuple(_FEEDBACK["headers"])
_FEEDBACK_STRONG_SUBJECTS = _phrases({"feedback": _FEEDBACK["strong_subjects"]})
_FEEDBACK_SUBJECTS = _phrases({"feedback": _FEEDBACK["subjects"]})
_FEEDBACK_OPENERS = _phrases({"feedback": _FEEDBACK["body_openers"]})
_FEEDBACK_LOCALS = _names(_FEEDBACK["locals"])

_FEEDBACK_REPORT_TYPES = frozenset({"feedback-report", "disposition-notification", "tlsrpt"})
_FEEDBACK_PARTS = frozenset({"message/feedback-report", "message/disposition-notification"})
_ORIGINAL_PARTS = frozenset(
    {
        "message/rfc822",
        "text/rfc822-headers",
        "message/rfc822-headers",
        "message/partial",
        "message/global",
        "message/global-headers",
    }
)
_NOT_FAILED_ACTIONS = frozenset({"delayed", "delivered", "relayed", "expanded"})


def _report_parts(msg: Message) -> Iterator[Message]:
    """The parts of the message itself in reading order, not those of any message attached to it (the
    returned original of a bounce may itself be a report). Iterative: nesting depth costs no stack."""
    stack = [msg]
    while stack:
        part = stack.pop()
        yield part
        # is_multipart() first: get_payload() of a text payload with undecodable bytes decodes it with the
        # part's charset, and a charset naming a NUL makes the stdlib raise.
        if part.get_content_maintype() == "multipart" and part.is_multipart():
            stack.extend(reversed([child for child in part.get_payload() if isinstance(child, Message)]))


def _dsn_actions(parts: list[Message]) -> set[str]:
    actions: set[str] = set()
    for part in parts:
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload() if part.is_multipart() else []
        for block in blocks:
            if isinstance(block, Message):
                for value in block.get_all("Action") or []:
                    # RFC 3464 action-value, possibly followed by a comment.
                    words = str(value).split()
                    if words:
                        actions.add(words[0].lower())
    return actions


def all_failures(msg: Message) -> tuple[frozenset[bytes], frozenset[bytes]]:
    """flufl.bounce's (temporary, permanent) failures. Imported on the first bounce: it compiles some 150
    patterns at import, 30 ms of every start, and only a bounce needs them."""
    from flufl.bounce import all_failures as flufl_all_failures

    return flufl_all_failures(msg)


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


def _local_part(address: str) -> str:
    """The local part, folded, without quotes: '"System Administrator"@x' -> 'system administrator'; a
    bare "MAILER-DAEMON" (no domain) is all local part."""
    local, at, _ = address.rpartition("@")
    return fold((local if at else address).strip().strip("<>").strip('"'))


def _opening(text: str, lines: int) -> str:
    """The first `lines` non-empty lines of a text, folded, as one line (a phrase may wrap)."""
    found: list[str] = []
    for raw in text[:_SCAN_CHARS].splitlines():
        line = raw[:_SCAN_LINE_CHARS].strip()
        if line:
            found.append(line)
            if len(found) == lines:
                break
    return fold(" ".join(found))


def _body_opening(mail: InboundMail) -> str:
    """The first lines of the mail's own body as written (a machine's text has no quote to cut)."""
    if mail.text:
        return _opening(mail.text, _REPORT_LINES)
    if mail.html:
        return _opening(html_to_text(mail.html[:_SCAN_CHARS]), _REPORT_LINES)
    return ""


def _return_path(mail: InboundMail) -> str | None:
    value = mail.message.get("Return-Path")
    return None if value is None else str(value).strip().lower()


def _gateway_sender(mail: InboundMail, local: str) -> str | None:
    if local in _GATEWAY_LOCALS or any(part in local for part in _GATEWAY_PARTS):
        return f"From: gateway address {local[:40]}"
    name = _GATEWAY_NAMES.find(fold(mail.from_name[:200])) if mail.from_name else None
    return f"From name: {name}" if name else None


def _classify_report(mail: InboundMail, token: str | None) -> Classification | None:
    """Delivery reports (failures, delays, successes) and feedback/abuse reports, in the order of how
    sure each sign is. A sign that can be a person's (a postmaster@ sender, a subject, an opening line, an
    attached message) counts only together with a second one."""
    msg = mail.message
    parts = list(itertools.islice(_report_parts(msg), _MAX_REPORT_PARTS))
    types = {part.get_content_type() for part in parts[1:]}
    signals: list[str] = []
    report_type = ""
    if mail.content_type == "multipart/report":
        report_type = str(msg.get_param("report-type") or "").strip().lower()
        signals.append(f"Content-Type: multipart/report; report-type={report_type or '?'}")
    local = _local_part(mail.from_addr or "")
    subject = fold(mail.subject[:_SCAN_SUBJECT_CHARS])
    forwarded = bool(_FORWARD_SUBJECT.match(mail.subject[:_SCAN_SUBJECT_CHARS]))
    attached = sorted(types & _ORIGINAL_PARTS)
    opened: list[str] = []

    def opening() -> str:  # read only when it can decide: a text needs decoding, HTML converting
        if not opened:
            opened.append(_body_opening(mail))
        return opened[0]

    # Feedback and abuse reports (ARF or not), read receipts, DMARC and TLS reports.
    strong_feedback = [f"report part {t}" for t in sorted(types & _FEEDBACK_PARTS)]
    if report_type in _FEEDBACK_REPORT_TYPES:
        strong_feedback.append(f"report-type={report_type}")
    strong_feedback += [f"{name} header" for name in _FEEDBACK_HEADERS if msg.get(name) is not None]
    if (found := _FEEDBACK_STRONG_SUBJECTS.find(subject)) and not forwarded:
        strong_feedback.append(f"Subject: {found}")
    feedback_words = [f"Subject: {found}" for found in [_FEEDBACK_SUBJECTS.find(subject)] if found and not forwarded]
    feedback_more = ([f"From: report address {local[:40]}"] if local in _FEEDBACK_LOCALS else []) + (
        [f"attached {attached[0]}"] if attached else []
    )
    if (feedback_words or feedback_more) and (found := _FEEDBACK_OPENERS.find(opening())):
        feedback_words.append(f"Body: {found}")
    if strong_feedback or (feedback_words and len(feedback_words) + len(feedback_more) >= 2):
        return Classification(
            Kind.AUTOMATED,
            "feedback-report",
            token,
            signals=tuple(signals + strong_feedback + feedback_words + feedback_more),
        )

    # Delivery reports.
    actions = _dsn_actions(parts)
    sure: list[str] = []
    if mail.content_type == "multipart/report":
        sure.append("multipart/report")
    if actions:
        sure.append("DSN Action: " + ",".join(sorted(actions)))
    if local in _DAEMON_LOCALS:
        sure.append("From: mailer-daemon")  # never a person, whatever its subject says
    return_path = _return_path(mail)
    if return_path and _local_part(return_path.strip("<>")) in _DAEMON_LOCALS:
        sure.append(f"Return-Path: {return_path[:60]}")
    sure += [f"{name} header" for name in _BOUNCE_HEADERS if msg.get(name) is not None]
    maybe: list[str] = []
    if (found := _BOUNCE_SUBJECTS.find(subject)) and not forwarded:
        maybe.append(f"Subject: {found}")
    if gateway := _gateway_sender(mail, local):
        maybe.append(gateway)
    if attached:
        maybe.append(f"attached {attached[0]}")
    if return_path == "<>":
        maybe.append("Return-Path: <>")
    if (sure or maybe) and (found := _REPORT_OPENERS.find(opening())):
        maybe.append(f"Body: {found}")
    if not sure and len(maybe) < 2:
        return None
    signals += sure + maybe
    if actions and actions <= _NOT_FAILED_ACTIONS:
        detail = "delay-notice" if "delayed" in actions else "delivery-report"
        return Classification(Kind.AUTOMATED, detail, token, signals=tuple(signals))
    temporary, permanent = _failed_recipients(mail, signals)
    delay = _DELAY_PHRASES.find(subject) or _DELAY_PHRASES.find(opening())
    if not permanent and "failed" not in actions and (temporary or delay):
        if delay:
            signals.append(f"delay: {delay}")
        return Classification(Kind.AUTOMATED, "delay-notice", token, signals=tuple(signals))
    if not permanent:
        signals.append("no failed recipient found")
    return Classification(Kind.AUTOMATED, "bounce", token, tuple(sorted(permanent)), tuple(signals))


# --- Auto-replies and other automated mail --------------------------------------------------------------

_AUTO = _TABLES["auto_reply"]
_LISTS = _TABLES["list_server"]
_AUTO_REPLY_HEADERS = tuple(_AUTO["headers"]["strong"])
_AUTO_REPLY_VALUES = {
    name: tuple(fold(v) for v in values) for name, values in _AUTO["headers"]["strong_values"].items()
}
_HINT_HEADERS = tuple(_AUTO["headers"]["hints"])
_NOREPLY_LOCALS = _names(_AUTO["noreply_locals"]["locals"])
_AUTO_REPLY_SUBJECTS = _phrases(_by_language(_AUTO["subject_prefixes"]), at_start=True)
_AUTO_REPLY_PHRASES = _phrases(_by_language(_AUTO["body_phrases"]))
_LIST_HEADERS = tuple(_LISTS["headers"])
_LIST_HEADER_VALUES = {name: tuple(fold(v) for v in values) for name, values in _LISTS["header_values"].items()}
_LIST_PROGRAMS = _names(_LISTS["program_locals"])
_LIST_SUFFIXES = tuple(_names(_LISTS["local_suffixes"]))
_LIST_PREFIXES = tuple(_names(_LISTS["local_prefixes"]))
_LIST_NOTICE_SUBJECTS = _phrases({"list": _LISTS["notice_subjects"]})
_LIST_NOTICE_OPENERS = _phrases({"list": _LISTS["notice_body_openers"]})
# A person's answer to an approval request: body phrases never outweigh it.
_DECISION_WORD = re.compile(r"(?<!\w)(?:approve|approved|deny|denied)(?!\w)", re.IGNORECASE)


def _header_says_yes(mail: InboundMail, name: str) -> bool:
    value = mail.message.get(name)
    return value is not None and str(value).strip().lower() not in ("no", "false", "0")


def _list_signs(mail: InboundMail, local: str, subject: str) -> tuple[list[str], list[str]]:
    """(list headers and list-server senders, signs that it is a notice rather than a post)."""
    listy = [name for name in _LIST_HEADERS if mail.message.get(name) is not None]
    for name, wanted in _LIST_HEADER_VALUES.items():
        value = fold(mail.header(name)[:200])
        if value and value.startswith(wanted):
            listy.append(f"{name}: {value[:40]}")
    if mail.header("Precedence").strip().lower() == "list":
        listy.append("Precedence: list")
    if local in _LIST_PROGRAMS:
        listy.append(f"From: list server {local[:40]}")
    notice = []
    if local.endswith(_LIST_SUFFIXES) or local.startswith(_LIST_PREFIXES):
        notice.append(f"From: list address {local[:40]}")
    if found := _LIST_NOTICE_SUBJECTS.find(subject):
        notice.append(f"Subject: {found}")
    if _header_says_yes(mail, "X-List-Administrivia"):
        notice.append("X-List-Administrivia")
    return listy, notice


def _new_text_start(mail: InboundMail) -> str:
    """The sender's new text (`newtext`), read from the first _SCAN_CHARS of each part: the first lines
    are at the top, and their new text is the same."""
    return new_text(
        dataclasses.replace(
            mail, text=mail.text and mail.text[:_SCAN_CHARS], html=mail.html and mail.html[:_SCAN_CHARS]
        )
    )


def _away_in_body(mail: InboundMail) -> str | None:
    """A strong out-of-office phrase in the first lines of the sender's new text, unless those lines read
    as a person's answer (APPROVE or DENY in them) or the text asks to join."""
    text = _new_text_start(mail)
    opening = _opening(text, _AUTO_REPLY_LINES)
    if not opening or _DECISION_WORD.search(opening) or is_request_text("", text):
        return None
    return _AUTO_REPLY_PHRASES.find(opening)


def _classify_auto(mail: InboundMail, token: str | None) -> Classification | None:
    """Auto-replies by header, subject and (last, most careful) body phrase; other lists' mail; no-reply
    senders. Strong signs decide alone; weak ones (Precedence, X-Auto-Response-Suppress, a null
    Return-Path) too, after list mail; hints only two together."""
    strong: list[str] = []
    weak: list[str] = []
    auto_submitted = mail.header("Auto-Submitted").strip().lower()
    if auto_submitted and not re.match(r"no\b", auto_submitted):
        (strong if auto_submitted.startswith("auto-replied") else weak).append(f"Auto-Submitted: {auto_submitted[:40]}")
    strong += [name for name in _AUTO_REPLY_HEADERS if _header_says_yes(mail, name)]
    for name, wanted in _AUTO_REPLY_VALUES.items():
        value = fold(mail.header(name)[:200])
        if value and any(w in value for w in wanted):
            strong.append(f"{name}: {value[:40]}")
    subject = fold(mail.subject[:_SCAN_SUBJECT_CHARS])
    # A subject is the sender's to write ("Out of office next week"): alone, it yields to a text that asks
    # to join.
    if (found := _AUTO_REPLY_SUBJECTS.find(subject)) and (strong or not is_request_text("", _new_text_start(mail))):
        strong.append(f"Subject: {found}")
    local = _local_part(mail.from_addr or "")
    noreply = [f"From: {local[:40]}"] if local in _NOREPLY_LOCALS else []
    precedence = mail.header("Precedence").strip().lower()
    if precedence in ("bulk", "junk", "auto_reply"):
        weak.append(f"Precedence: {precedence}")
    if mail.message.get("X-Auto-Response-Suppress") is not None:
        # Exchange puts it on its auto-replies; a person's client does not.
        weak.append("X-Auto-Response-Suppress")
    if _return_path(mail) == "<>":
        weak.append("Return-Path: <>")
    hints = [name for name in _HINT_HEADERS if mail.message.get(name) is not None]
    listy, notice = _list_signs(mail, local, subject)
    if strong:
        return Classification(Kind.AUTOMATED, "auto-reply", token, signals=tuple(strong + weak + noreply + listy))
    if (listy or notice) and (found := _LIST_NOTICE_OPENERS.find(_body_opening(mail))):
        notice.append(f"Body: {found}")
    if listy or (notice and (len(notice) >= 2 or weak or hints)):
        kind = ["list notice"] if notice else ["list post"]
        return Classification(Kind.AUTOMATED, "list-traffic", token, signals=tuple(listy + notice + kind + weak))
    if weak:
        return Classification(Kind.AUTOMATED, "auto-reply", token, signals=tuple(weak + noreply + hints))
    if found := _away_in_body(mail):
        return Classification(Kind.AUTOMATED, "auto-reply", token, signals=(f"Body: {found}", *noreply, *hints))
    if noreply or len(hints) >= 2:
        return Classification(Kind.AUTOMATED, "notification", token, signals=tuple(noreply + hints))
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


def _looks_human(mail: InboundMail) -> bool:
    return not (_classify_report(mail, None) or _classify_auto(mail, None))


def classify(mail: InboundMail, *, bot_address: str, list_address: str) -> Classification:
    """Classify one parsed inbound message. The rules and their order are in the module docstring."""
    token = find_token(mail.recipients, bot_address)
    from_addr = mail.from_addr
    from_local, from_domain = _split(from_addr or "")
    # 1. Nobody to answer. A From naming several mailboxes (or a group) on a token address is still judged
    #    as a reply, so that the forgery attempt is refused and reported, never answered.
    if not from_addr or not from_local or "." not in from_domain:
        if (
            token is not None
            and mail.message.get("From") is not None
            and mail.message.get(LOOP_HEADER) is None
            and _looks_human(mail)
        ):
            return Classification(Kind.REPLY, "token-reply", token, signals=("From: not exactly one mailbox",))
        return Classification(Kind.AUTOMATED, "no-sender", token, signals=("From: none usable",))
    # 2. Our own mail, or mail that carries our loop marker back to us.
    if _is_own(from_addr, bot_address):
        return Classification(Kind.AUTOMATED, "own-mail", token, signals=("From: bot address",))
    if mail.message.get(LOOP_HEADER) is not None:
        return Classification(Kind.AUTOMATED, "loop", token, signals=(f"{LOOP_HEADER} present",))
    # 3.-5. Machines.
    machine = (
        _classify_mailman(mail, list_address, token) or _classify_report(mail, token) or _classify_auto(mail, token)
    )
    if machine is not None:
        return machine
    # 6. A person answering one approval request.
    if token is not None:
        return Classification(Kind.REPLY, "token-reply", token, signals=("To: token address",))
    # 7. A member leaving, then a person asking to join.
    words = new_text(mail)
    if is_leave_text(mail.subject, words):
        return Classification(Kind.MEMBERSHIP, "leave", signals=("leave words",))
    if removal_target(words) is not None:
        return Classification(Kind.MEMBERSHIP, "remove", signals=("remove ADDRESS",))
    if is_request_text(mail.subject, words):
        return Classification(Kind.REQUEST, "subscribe", signals=("request words",))
    # 8.-9. A person writing something else: only the wording of the help reply differs.
    threaded = _threaded_to_us(mail, _split(bot_address)[1])
    if threaded:
        return Classification(Kind.OTHER, "threaded-without-token", signals=(threaded,))
    return Classification(Kind.OTHER, "help")
