"""An inbound message as the later stages see it: raw bytes in, decoded headers and body texts out.

Pure: no I/O. `mail-parser` decodes bodies (it copes with unknown and mislabelled charsets better than
the stdlib alone); the stdlib `email` package gives the headers. The raw bytes are kept untouched for
the audit.
"""

from __future__ import annotations

import email.header
import email.utils
import hashlib
import logging
import re
from dataclasses import dataclass, field
from email.message import Message

import mailparser

# mail-parser logs every part type it does not decode (e.g. rfc822-headers in bounces) at WARNING.
logging.getLogger("mailparser").setLevel(logging.ERROR)

RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To", "X-Delivered-To")


class UnparseableMail(Exception):
    """The bytes are not a message we can read at all; the reason goes to the store."""


@dataclass(frozen=True)
class InboundMail:
    raw: bytes
    message: Message = field(repr=False)
    message_id: str | None
    from_addr: str | None          # addr-spec as written, None if absent or unreadable
    from_name: str
    subject: str
    recipients: tuple[str, ...]    # every address in RECIPIENT_HEADERS, as written
    text: str | None               # the first text/plain body part, decoded
    html: str | None               # the first text/html body part, decoded
    body_hash: str                 # sha256 of the body (everything after the header section)

    def header(self, name: str) -> str:
        """The first header of that name, decoded to text ('' if absent)."""
        value = self.message.get(name)
        return decode_header(value) if value is not None else ""

    def headers(self, name: str) -> list[str]:
        """Every header of that name, top to bottom, decoded to text."""
        return [decode_header(v) for v in self.message.get_all(name) or []]

    @property
    def content_type(self) -> str:
        return self.message.get_content_type()

    @property
    def from_domain(self) -> str | None:
        if not self.from_addr or "@" not in self.from_addr:
            return None
        return self.from_addr.rsplit("@", 1)[1].lower()

    def raw_headers(self) -> bytes:
        return split_raw(self.raw)[0]


def decode_header(value: object) -> str:
    """RFC 2047-decode a header value; undecodable bytes become U+FFFD instead of raising."""
    text = str(value)
    try:
        parts = email.header.decode_header(text)
    except (ValueError, LookupError, AssertionError):
        return _unfold(text)
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            try:
                out.append(chunk.decode(charset or "ascii", errors="replace"))
            except LookupError:
                out.append(chunk.decode("utf-8", errors="replace"))
        else:
            out.append(chunk)
    return _unfold("".join(out))


def _unfold(text: str) -> str:
    return re.sub(r"\r?\n[ \t]+", " ", text).strip()


def _raw_header(value: object) -> str:
    """A header value as it stands in the message (folding undone), encoded-words left encoded."""
    if isinstance(value, email.header.Header):
        return _unfold(value.encode())
    return _unfold(str(value))


def split_raw(raw: bytes) -> tuple[bytes, bytes]:
    """(header section, body) of raw message bytes."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        index = raw.find(sep)
        if index >= 0:
            return raw[: index + len(sep)], raw[index + len(sep):]
    return raw, b""


def addresses(values: list[str]) -> list[tuple[str, str]]:
    """(display name, addr-spec) pairs from address headers; entries without an '@' are dropped."""
    try:
        pairs = email.utils.getaddresses(values)
    except (ValueError, IndexError):
        return []
    return [(name, addr) for name, addr in pairs if "@" in addr]


def parse_mail(raw: bytes) -> InboundMail:
    """Parse raw message bytes. Raises UnparseableMail when nothing usable can be read."""
    # Some real messages start with a blank line: the stdlib then sees no headers at all.
    raw = raw.lstrip(b"\r\n")
    if not raw.strip():
        raise UnparseableMail("empty message")
    try:
        parsed = mailparser.parse_from_bytes(raw)
    except Exception as exc:  # mail-parser raises many kinds on hostile input; all mean "unreadable"
        raise UnparseableMail(f"cannot parse the message: {type(exc).__name__}: {exc}") from exc
    msg = parsed.message
    if not msg.keys():
        raise UnparseableMail("the message has no header section")

    # Addresses are parsed from the raw header and only display names decoded: decoding first would let
    # From: =?utf-8?q?=3Cadmin=40nic.nl=3E?= <evil@example> read as admin@nic.nl.
    from_pairs = addresses([_raw_header(v) for v in msg.get_all("From") or []])
    from_name, from_addr = from_pairs[0] if from_pairs else ("", None)
    from_name = decode_header(from_name) if from_name else ""
    recipients: list[str] = []
    for name in RECIPIENT_HEADERS:
        values = [_raw_header(v) for v in msg.get_all(name) or []]
        recipients.extend(addr for _, addr in addresses(values))
    message_id = (msg.get("Message-ID") or "").strip() or None
    return InboundMail(
        raw=raw,
        message=msg,
        message_id=message_id,
        from_addr=from_addr,
        from_name=from_name,
        subject=decode_header(msg.get("Subject", "")),
        recipients=tuple(recipients),
        text=_fix_stateful_charset(parsed.text_plain[0], msg, "text/plain") if parsed.text_plain else None,
        html=_fix_stateful_charset(parsed.text_html[0], msg, "text/html") if parsed.text_html else None,
        body_hash=hashlib.sha256(split_raw(raw)[1]).hexdigest(),
    )


def _fix_stateful_charset(text: str, msg: Message, content_type: str) -> str:
    """mail-parser 4.8 returns 7bit ISO-2022-* parts undecoded (escape sequences and all): decode them."""
    if "\x1b" not in text:
        return text
    for part in msg.walk():
        charset = (part.get_content_charset() or "").lower()
        if part.get_content_type() == content_type and charset.startswith("iso-2022"):
            try:
                return text.encode("ascii").decode(charset)
            except (UnicodeError, LookupError):
                return text
    return text
