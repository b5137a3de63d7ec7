"""The mails the bot sent in the timed backlog run, written as normalised text (`bench/run.py --mails-out FILE`).

Two runs of the same mix and seed — of one commit twice, or of two commits (`--checkout DIR`) — send the same
mails, byte for byte, except for what cannot repeat: dates, Message-IDs, the bot's random reply tokens, and
MIME boundaries. Those are replaced here, everything else is kept as the sink received it, so that
`bench/compare_mails.py A B` proves the same mail went out. The file holds one record per captured mail:

    === mail
    purpose: approval-request              (the bot's own outbox row for the Message-ID, "?" if not found)
    envelope-from: join@lists.example.org
    recipients: a@nic.example, b@nic.example   (the envelope's, sorted)
    | Subject: ...                         (the message, one "| " line per CRLF line)

What is replaced, and by what:

- the value of Date: by `<date>`;
- every Message-ID, In-Reply-To and References value (the whole field, however it was folded) by labels: a
  message of the backlog by its place in the mix, `<in:17 reply-approve>`; a phase-A request `<a-in:3>`; a
  mail of the bot `<bot-mail #12 to x@nic.example>` (request number from its Subject, first recipient);
  anything else `<msgid>`. The same Message-IDs are also replaced where they appear in a header or body;
- the bot's reply tokens (`join+TOKEN@...`, 32 base32 characters, `secirbot/tokens.py`), wherever they appear,
  by `<token #12 x@nic.example>`: the request number and recipient of the first mail that carried it in its
  Reply-To (or From); a token that came in with the backlog itself (the unknown-token replies) is kept, any
  other 32-character base32 word becomes `<token>`;
- moments within 90 days of the timed run's start T0 — `2026-12-04T07:13:00Z`, `2026-12-04 07:13 UTC`,
  RFC 5322 dates, bare `2026-12-04` — by their distance from T0 rounded to 10 minutes, `<time T+14d>`,
  `<time T+0>` (bare dates: `<date T+14d>`): an expiry stays "14 days after" instead of disappearing. Moments
  further away (the dates of the real test mails, years old) are kept as they are;
- MIME boundary values by `<boundary-1>`, `<boundary-2>`, ... in the order they first appear;
- quoted-printable soft line breaks ("=" at a line end) are joined, since where a line wraps depends on the
  length of the values replaced before it. The replacements run on the encoded text, so a value right after
  an escape (`=EF=BC=882026-12-04 18:59 UTC`, UTF-8 text around it) is found too.

Request numbers, addresses, subjects, decisions and every other byte are kept. Records are sorted by
(purpose, recipients, normalised text), so the order in which the bot sent them does not matter.
"""

from __future__ import annotations

import email.utils
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

from secirbot.sandbox.smtp_sink import Captured
from secirbot.tokens import TOKEN_LENGTH

from .rig import BOT

RECORD = "=== mail"
NEAR = timedelta(days=90)  # moments closer than this to T0 are written relative to it
ROUND_MINUTES = 10

_BOT_LOCAL, _BOT_DOMAIN = BOT.rsplit("@", 1)
_TOKEN_ADDRESS = re.compile(
    rf"{re.escape(_BOT_LOCAL)}\+([a-z2-7]{{{TOKEN_LENGTH}}})@{re.escape(_BOT_DOMAIN)}", re.IGNORECASE
)
# Where a word may start: after a non-alphanumeric character, or right after a quoted-printable escape ("=E3"),
# since the replacements run on the message as sent, where UTF-8 text next to a value is "=XX" escapes.
_START = r"(?:(?<![A-Za-z0-9])|(?<==[0-9A-F]{2}))"
_QP_ESCAPES = re.compile(r"^(?:=[0-9A-F]{2})+")
_TOKEN_WORD = re.compile(rf"{_START}[A-Za-z2-7]{{{TOKEN_LENGTH}}}(?![A-Za-z0-9])")
_ID_HEADERS = ("message-id", "in-reply-to", "references", "resent-message-id")
_MSG_ID = re.compile(r"<([^<>\s]+)>")
# An addr-spec-like word: Message-IDs are looked up among these (an address that is no Message-ID stays).
_ID_WORD = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]+@[A-Za-z0-9.\-\[\]]+[A-Za-z0-9\]]")
_SUBJECT_NO = re.compile(r"\[#(\d+)\]")
_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_MOMENT = re.compile(
    _START + r"(?:(?P<iso>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)"
    r"|(?P<utc>\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2})?(?: UTC(?![A-Za-z]))?)"
    rf"|(?P<rfc>(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?\d{{1,2}} (?:{_MONTHS}) \d{{4}} \d{{2}}:\d{{2}}(?::\d{{2}})?"
    r" (?:[+-]\d{4}|GMT|UTC|UT)(?![A-Za-z0-9]))"
    r"|(?P<day>\d{4}-\d{2}-\d{2}))(?![0-9])"
)
_BOUNDARY = re.compile(rb'boundary="?([^";\r\n]+)"?', re.IGNORECASE)


@dataclass
class Context:
    """What the normalisation needs to know about the run: T0, and the labels of known Message-IDs and tokens."""

    started: datetime  # T0: just before the timed run, UTC
    message_ids: dict[str, str] = field(default_factory=dict)  # Message-ID without <>, lower-cased -> label
    tokens: dict[str, str] = field(default_factory=dict)  # token (lower-case) -> label
    kept_tokens: set[str] = field(default_factory=set)  # tokens that came in with the mix: deterministic
    purposes: dict[str, str] = field(default_factory=dict)  # the bot's Message-ID (lower-cased, no <>) -> purpose

    def add_inbound(self, raws: Iterable[tuple[str, bytes]]) -> None:
        """Mail the bench wrote (the mix, phase A), as (label, raw): their Message-IDs become the label, and
        the tokens in them are kept as they are unless the bot minted them."""
        parser = BytesHeaderParser(policy=compat32)
        for label, raw in raws:
            value = parser.parsebytes(raw).get("Message-ID")
            for found in _MSG_ID.findall(str(value or "")):
                self.message_ids.setdefault(found.lower(), label)
            self.kept_tokens.update(m.group(0).lower() for m in _TOKEN_WORD.finditer(raw.decode("latin-1")))

    def add_sent(self, sent: Sequence[Captured]) -> None:
        """Mail the bot sent (phase A or the timed run): its Message-ID and the tokens of its reply address."""
        for mail in sent:
            # The smallest label wins where several mails carry one value: independent of the sending order.
            label = _mail_label(mail)
            for found in _MSG_ID.findall(str(mail.message.get("Message-ID") or "")):
                key = found.lower()
                self.message_ids[key] = min(self.message_ids.get(key, f"bot-mail {label}"), f"bot-mail {label}")
            for name in ("Reply-To", "From"):
                for match in _TOKEN_ADDRESS.finditer(str(mail.message.get(name) or "")):
                    key = match.group(1).lower()
                    self.tokens[key] = min(self.tokens.get(key, f"token {label}"), f"token {label}")

    def add_purposes(self, db: Path) -> None:
        """The purpose of each mail, from the bot's outbox (left empty if the store has no such table)."""
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                rows = conn.execute("SELECT message_id, purpose FROM outbox").fetchall()
        except sqlite3.Error:
            return
        for message_id, purpose in rows:
            self.purposes[str(message_id).strip().strip("<>").lower()] = str(purpose)


def _mail_label(mail: Captured) -> str:
    match = _SUBJECT_NO.search(str(mail.message.get("Subject") or ""))
    first = min(mail.rcpt_tos, key=str.lower).lower() if mail.rcpt_tos else "?"
    return f"#{match.group(1)} to {first}" if match else f"to {first}"


def _relative(moment: datetime, started: datetime) -> str | None:
    delta = moment - started
    if abs(delta) > NEAR:
        return None
    minutes = round(delta.total_seconds() / 60 / ROUND_MINUTES) * ROUND_MINUTES
    if minutes == 0:
        return "T+0"
    sign, minutes = ("+" if minutes > 0 else "-"), abs(minutes)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{minutes}m"] * bool(minutes)
    return "T" + sign + "".join(parts)


def _moment(match: re.Match[str], started: datetime) -> str:
    text = match.group(0)
    try:
        if match.group("iso"):
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        elif match.group("utc"):
            moment = datetime.fromisoformat(text.removesuffix(" UTC")).replace(tzinfo=UTC)
        elif match.group("rfc"):
            moment = email.utils.parsedate_to_datetime(text)
        else:
            day = datetime.fromisoformat(text).date()
            span = (day - started.date()).days
            if abs(span) > NEAR.days:
                return text
            return f"<date T{span:+d}d>" if span else "<date T+0>"
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    relative = _relative(moment, started)
    return text if relative is None else f"<time {relative}>"


def _replace_text(text: str, ctx: Context) -> str:
    def token(match: re.Match[str]) -> str:
        word = match.group(0).lower()
        if word in ctx.tokens:
            return f"<{ctx.tokens[word]}>"
        if word in ctx.kept_tokens or word != match.group(0):
            return match.group(0)  # it came with the mix, or it has capitals (tokens are lower-case)
        return "<token>"

    def message_id(match: re.Match[str]) -> str:
        word = match.group(0)
        label = ctx.message_ids.get(word.lower())
        if label is None:  # "=" is allowed in a Message-ID, so a word may start with quoted-printable escapes
            escapes = _QP_ESCAPES.match(word)
            if escapes is None:
                return word
            label = ctx.message_ids.get(word[escapes.end() :].lower())
            return word if label is None else escapes.group(0) + label
        return label

    text = _TOKEN_WORD.sub(token, text)
    text = _ID_WORD.sub(message_id, text)
    return _MOMENT.sub(lambda m: _moment(m, ctx.started), text)


def _fields(head: bytes) -> list[bytes]:
    """The header fields of a header section, each with its continuation lines (CRLF line ends)."""
    out: list[bytes] = []
    for line in head.split(b"\r\n"):
        if out and line[:1] in (b" ", b"\t"):
            out[-1] += b"\r\n" + line
        else:
            out.append(line)
    return out


def normalise(raw: bytes, ctx: Context) -> str:
    """One captured message as normalised text (see the module docstring); CRLF line ends kept."""
    boundaries: dict[bytes, bytes] = {}
    for found in _BOUNDARY.findall(raw):
        boundaries.setdefault(found, b"<boundary-%d>" % (len(boundaries) + 1))
    for value, label in boundaries.items():
        raw = raw.replace(value, label)
    cut = raw.find(b"\r\n\r\n")
    head, body = (raw, b"") if cut < 0 else (raw[:cut], raw[cut:])
    fields = []
    for item in _fields(head):
        name, _, value = item.partition(b":")
        lower = name.strip().lower().decode("latin-1")
        if lower == "date":
            item = name + b": <date>"
        elif lower in _ID_HEADERS:
            ids = _MSG_ID.findall(value.decode("latin-1"))
            labels = [f"<{ctx.message_ids.get(i.lower(), 'msgid')}>" for i in ids] or ["<msgid>"]
            item = name + b": " + " ".join(labels).encode()
        fields.append(item)
    if re.search(rb"(?im)^content-transfer-encoding:[ \t]*quoted-printable", raw):
        body = body.replace(b"=\r\n", b"")
    text = (b"\r\n".join(fields) + body).decode("utf-8", errors="backslashreplace")
    return _replace_text(text, ctx)


def _lines(text: str) -> list[str]:
    """CRLF lines as '| ' lines; a bare CR or LF inside a line is shown as <CR> / <LF>."""
    return ["| " + line.replace("\r", "<CR>").replace("\n", "<LF>") for line in text.split("\r\n")]


def records(sent: Sequence[Captured], ctx: Context) -> list[str]:
    """Each captured mail as one record (without the trailing newline), sorted."""
    keyed = []
    for mail in sent:
        message_id = _MSG_ID.findall(str(mail.message.get("Message-ID") or ""))
        purpose = ctx.purposes.get(message_id[0].lower(), "?") if message_id else "?"
        recipients = _replace_text(", ".join(sorted(mail.rcpt_tos, key=str.lower)), ctx)
        text = normalise(mail.data, ctx)
        record = "\n".join(
            [
                RECORD,
                f"purpose: {purpose}",
                f"envelope-from: {_replace_text(mail.mail_from, ctx)}",
                f"recipients: {recipients}",
                *_lines(text),
            ]
        )
        keyed.append(((purpose, recipients.lower(), text), record))
    return [record for _, record in sorted(keyed)]


def write(path: Path, sent: Sequence[Captured], ctx: Context, header: Sequence[str]) -> int:
    """Write the records to `path` ('#' lines first, which compare_mails.py prints but does not compare)."""
    out = records(sent, ctx)
    lines = [f"# {line}" for line in header]
    lines += [
        f"# {len(out)} mails captured by the sink in the timed backlog run; T0 {ctx.started:%Y-%m-%d %H:%M:%S} UTC",
        "# normalised (bench/mails.py): Date, Message-IDs, reply tokens, moments near T0, MIME boundaries,",
        "# quoted-printable soft line breaks",
    ]
    path.write_text("\n".join(lines + out) + "\n", encoding="utf-8")
    return len(out)
