"""An inbound message as the later stages see it: raw bytes in, decoded headers and the sender's own body out.

Pure: no I/O. The stdlib `email` package parses the MIME tree (lazily: nothing is decoded that the bot
does not read). mail-parser, used here before, decoded every part and every part header of every mail:
its text lists mixed in attached mails' parts, and its RFC 2047 decoding of part headers cost quadratic
time (100,000 encoded words in one attachment's filename took 18 s). The raw bytes are kept untouched.

Owns three readings every later stage relies on, so that no stage makes its own:
- **the sender**: `from_addr` is the one mailbox the From header names, read strictly (exactly one From
  header, two parsers agree on exactly one addr-spec, no group), else None with `from_problem`. A display
  name never chooses an address;
- **the body the sender wrote**: the first text/plain and text/html of the message's *own* body
  (multipart/alternative, mixed, related, signed), never a part of an attached or embedded message
  (`message/rfc822`) and never an attachment. A forwarded or attached mail's words are not the sender's;
- **addresses in one canonical form** (`address_key`): quoted local parts, case, trailing dots and IDNA
  compared the same way everywhere, and `is_plain_address` for addresses the bot will act on.

Hostile input is bounded before anything is decoded: a header section or a single header field over the
limits below is unreadable (quarantined), so decoding costs linear, small time whatever the mail.
"""

from __future__ import annotations

import email.errors
import email.header
import email.policy
import email.utils
import hashlib
import re
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import idna

RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To", "X-Delivered-To")

# Real header sections stay far below these (a 40-hop Received chain is ~20 KB; a long thread's
# References ~10 KB). Above them a mail is hostile or broken, and RFC 2047 decoding of a huge field costs
# quadratic time in the stdlib: such a mail is quarantined unread.
MAX_HEADER_SECTION = 256 * 1024
MAX_HEADER_FIELD = 32 * 1024
# Body parts looked at when choosing the sender's text: a tree of thousands of parts is not a person's.
MAX_BODY_PARTS = 500


class UnparseableMail(Exception):
    """The bytes are not a message we can read at all; the reason goes to the store."""


@dataclass(frozen=True)
class InboundMail:
    raw: bytes
    message: Message = field(repr=False)
    message_id: str | None  # normalised: one "<id>" token, no whitespace; None if absent or unusable
    from_addr: str | None  # the one mailbox From names, strictly read; None if not exactly one
    from_problem: str  # why from_addr is None ('' when it is set)
    from_name: str  # display name, decoded, on one line
    subject: str  # decoded, on one line
    recipients: tuple[str, ...]  # every address in RECIPIENT_HEADERS, as written
    text: str | None  # the message's own first text/plain body part, decoded
    html: str | None  # the message's own first text/html body part, decoded
    body_hash: str  # sha256 of the body (everything after the header section)
    text_flowed: bool = False  # the text part is format=flowed (RFC 3676)
    text_delsp: bool = False  # ... with delsp=yes

    def header(self, name: str) -> str:
        """The first header of that name, decoded to text ('' if absent)."""
        value = self.message.get(name)
        return decode_header(value) if value is not None else ""

    def headers(self, name: str) -> list[str]:
        """Every header of that name, top to bottom, decoded to text."""
        return [decode_header(v) for v in self.message.get_all(name) or []]

    def addresses_in(self, name: str) -> list[str]:
        """The addr-specs of every header of that name, top to bottom, as written."""
        return self.addresses_in_value(self.message.get_all(name) or [])

    @staticmethod
    def addresses_in_value(values: list[Any]) -> list[str]:
        """The addr-specs of these header values, as written."""
        return [addr for _, addr in addresses([_raw_header(v) for v in values])]

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


# --- headers ---------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
_SPACES = re.compile(r"  +")


def decode_header(value: object) -> str:
    """RFC 2047-decode a header value to one line of text: undecodable bytes become U+FFFD instead of
    raising, and line breaks or other control characters (literal or encoded, `=0D=0A`) become spaces,
    so a decoded value can never start a header or a line of its own wherever it is placed."""
    # Unfold first: the stdlib decoder strips the white space that starts each folded line, so an encoded
    # word folded before plain text ran into it (".ಭಾರತ\n hello" read as ".ಭಾರತhello", the ccTLD missed).
    text = _unfold(str(value))
    try:
        parts = email.header.decode_header(text)
    except (ValueError, LookupError, AssertionError, email.errors.HeaderParseError):
        return one_line(text)  # a broken encoded word ('=?utf-8?b?0?=') is shown as written
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            try:
                out.append(chunk.decode(charset or "ascii", errors="replace"))
            except LookupError:
                out.append(chunk.decode("utf-8", errors="replace"))
        else:
            out.append(chunk)
    return one_line("".join(out))


def one_line(text: str) -> str:
    """Folding undone and every control character (CR, LF, NUL, ...) as one space; trimmed."""
    return _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()


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
            return raw[: index + len(sep)], raw[index + len(sep) :]
    return raw, b""


def _check_header_size(head: bytes) -> None:
    """Raise UnparseableMail if the header section, or one field with its folded lines, is too long."""
    if len(head) > MAX_HEADER_SECTION:
        raise UnparseableMail(f"the header section is {len(head)} bytes (more than {MAX_HEADER_SECTION})")
    field_start = 0
    pos = 0
    while pos < len(head):
        end = head.find(b"\n", pos)
        end = len(head) if end < 0 else end + 1
        if head[pos : pos + 1] not in (b" ", b"\t"):
            field_start = pos
        if end - field_start > MAX_HEADER_FIELD:
            name = head[field_start : field_start + 40].split(b":", 1)[0].decode("ascii", "replace")
            raise UnparseableMail(f"the header field {name!r} is longer than {MAX_HEADER_FIELD} bytes")
        pos = end


def addresses(values: list[str]) -> list[tuple[str, str]]:
    """(display name, addr-spec) pairs from address headers; entries without an '@' are dropped."""
    try:
        pairs = email.utils.getaddresses(values)
    except (ValueError, IndexError, RecursionError):  # RecursionError: 500 nested '(' comments
        return []
    return [(name, addr) for name, addr in pairs if "@" in addr]


def normalise_message_id(value: object) -> str | None:
    """The Message-ID as one `<id>` token: folding and whitespace removed (RFC 5322's obsolete syntax
    allows CFWS inside), the first angle-bracketed token if there are several; None if none is usable."""
    if value is None:
        return None
    text = re.sub(r"\s+", "", str(value))
    match = re.search(r"<[^<>]{1,900}>", text)
    if match:
        return match.group(0)
    return f"<{text}>" if text and "<" not in text and ">" not in text and len(text) <= 900 else None


# Defects that change nothing about which address is named: obsolete syntax, and a badly encoded word in
# the display name (it decodes with replacement characters).
_HARMLESS_DEFECTS = (
    email.errors.ObsoleteHeaderDefect,
    email.errors.InvalidBase64PaddingDefect,
    email.errors.InvalidBase64CharactersDefect,
    email.errors.InvalidBase64LengthDefect,
    email.errors.UndecodableBytesDefect,
)


def strict_from(msg: Message) -> tuple[str | None, str, str]:
    """(addr-spec, display name, '') of the one mailbox the From header names, or (None, '', why not).

    Two parsers must agree: where they differ ('a@nic.nl <evil@x>', 'Eve Bcc: x5@evil <eve@x>'), mail
    clients, DMARC and we could each read another address."""
    values = msg.get_all("From") or []
    if not values:
        return None, "", "no From header"
    if len(values) > 1:
        return None, "", f"{len(values)} From headers"
    value = re.sub(r"\r?\n(?=[ \t])", "", str(values[0]))
    try:
        header: Any = email.policy.default.header_factory("From", value)
        parsed = [
            (group.display_name, address.addr_spec, address.display_name)
            for group in header.groups
            for address in group.addresses
        ]
    except Exception:  # the stdlib parser raises assorted errors on hostile input
        return None, "", "unreadable From header"
    try:
        lax = [addr for _, addr in email.utils.getaddresses([value]) if addr]
    except (ValueError, IndexError, RecursionError):
        return None, "", "unreadable From header"
    serious = [d for d in header.defects if not isinstance(d, _HARMLESS_DEFECTS)]
    not_one = "the From header does not name exactly one address"
    if len(parsed) != 1 or len(lax) != 1 or serious:
        return None, "", not_one
    group_name, addr_spec, display = parsed[0]
    # The same mailbox, maybe written differently ('"tech"@sidn.nl' is read as tech@sidn.nl by one): kept
    # as written, so that a later check can refuse a form that is not plain.
    if group_name is not None or not address_key(lax[0]) or address_key(addr_spec) != address_key(lax[0]):
        return None, "", not_one
    return lax[0], one_line(display or ""), ""


# --- addresses in one form ---------------------------------------------------------------------------

_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LDH_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _ascii_domain(domain: str) -> str | None:
    domain = domain.strip().rstrip(".").lower()
    if not domain or domain.startswith("[") or ".." in domain:
        return None
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError:
            return None
    return domain


def address_key(address: str) -> str:
    """The one form in which two addresses are compared: `local@domain` with a quoted local part unquoted,
    the local part lower-cased (treating case as significant would let `Tech@` approve for `tech@`), the
    domain lower-cased, without trailing dot, in ASCII (IDNA). '' for something that is not an address."""
    local, _, domain = address.strip().rpartition("@")
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        local = re.sub(r"\\(.)", r"\1", local[1:-1])
    ascii_domain = _ascii_domain(domain)
    if not local or not ascii_domain:
        return ""
    return f"{local.lower()}@{ascii_domain}"


def same_address(a: str, b: str) -> bool:
    key = address_key(a)
    return bool(key) and key == address_key(b)


def is_plain_address(address: str) -> bool:
    """`local@domain` in its plain form only: a dot-atom local part (no quotes, no spaces), a host name
    domain (an IDN in its xn-- form: the bot sends without SMTPUTF8), no trailing dot, no address literal.
    Only such an address is shown to IANA contacts as a requester, so that what they read is exactly who
    would be subscribed."""
    local, _, domain = address.rpartition("@")
    if not local or len(address) > 254 or not address.isascii() or not _DOT_ATOM.match(local):
        return False
    if domain.endswith(".") or "." not in domain:
        return False
    return all(_LDH_LABEL.match(label) for label in domain.lower().split("."))


# --- the sender's own body ---------------------------------------------------------------------------


def _is_attachment(part: Message) -> bool:
    return (part.get_content_disposition() or "") == "attachment"


def own_body_parts(msg: Message) -> tuple[Message | None, Message | None]:
    """(text/plain part, text/html part) of the message's own body: the first of each in reading order
    among multipart/alternative siblings, and in a mixed or related body the first part that holds text.
    Attachments and attached or embedded messages (message/*) are never looked into."""
    budget = [MAX_BODY_PARTS]

    def find(part: Message) -> tuple[Message | None, Message | None]:
        budget[0] -= 1
        if budget[0] < 0 or _is_attachment(part):
            return None, None
        maintype, subtype = part.get_content_maintype(), part.get_content_subtype()
        if maintype == "text" and not part.is_multipart():
            if subtype == "plain":
                return part, None
            if subtype == "html":
                return None, part
            return None, None
        if maintype != "multipart" or not part.is_multipart():  # never get_payload() of a text payload here
            return None, None  # message/rfc822, message/delivery-status, images, ...
        children = [c for c in part.get_payload() if isinstance(c, Message)]
        if subtype == "alternative":
            plain = html = None
            for child in children:
                p, h = find(child)
                plain, html = plain or p, html or h
            return plain, html
        for child in children[:1] if subtype == "signed" else children:
            p, h = find(child)
            if p is not None or h is not None:
                return p, h
        return None, None

    return find(msg)


def decode_part(part: Message) -> str:
    """A body part's text: its transfer encoding undone, then its charset; a wrong or unknown charset
    falls back to UTF-8, then to replacement characters, never raising."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = (part.get_content_charset() or "us-ascii").strip().lower()
    for candidate in (charset, "utf-8"):
        try:
            text = payload.decode(candidate)
            text.encode("utf-8")  # some codecs yield lone surrogates
            return text
        except (LookupError, UnicodeError, ValueError):  # ValueError: a NUL in the charset name
            continue
    return payload.decode("utf-8", "replace")


def parse_mail(raw: bytes) -> InboundMail:
    """Parse raw message bytes. Raises UnparseableMail when nothing usable can be read."""
    # Some real messages start with a blank line: the stdlib then sees no headers at all.
    raw = raw.lstrip(b"\r\n")
    if not raw.strip():
        raise UnparseableMail("empty message")
    head, body = split_raw(raw)
    _check_header_size(head)
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        plain, html = own_body_parts(msg)
    except RecursionError as exc:
        raise UnparseableMail("the MIME parts are nested too deep to read (multipart nesting too deep)") from exc
    except (ValueError, TypeError, LookupError, AssertionError, email.errors.MessageError) as exc:
        raise UnparseableMail(f"cannot parse the message: {type(exc).__name__}: {exc}") from exc
    if not msg.keys():
        raise UnparseableMail("the message has no header section")

    # Addresses are parsed from the raw header and only display names decoded: decoding first would let
    # From: =?utf-8?q?=3Cadmin=40nic.nl=3E?= <evil@example> read as admin@nic.nl.
    from_addr, from_name, from_problem = strict_from(msg)
    recipients: list[str] = []
    for name in RECIPIENT_HEADERS:
        values = [_raw_header(v) for v in msg.get_all(name) or []]
        recipients.extend(addr for _, addr in addresses(values))
    return InboundMail(
        raw=raw,
        message=msg,
        message_id=normalise_message_id(msg.get("Message-ID")),
        from_addr=from_addr,
        from_problem=from_problem,
        from_name=from_name,
        subject=decode_header(msg.get("Subject", "")),
        recipients=tuple(recipients),
        text=decode_part(plain) if plain is not None else None,
        html=decode_part(html) if html is not None else None,
        body_hash=hashlib.sha256(body).hexdigest(),
        text_flowed=plain is not None and str(plain.get_param("format", "")).lower() == "flowed",
        text_delsp=plain is not None and str(plain.get_param("delsp", "")).lower() == "yes",
    )
