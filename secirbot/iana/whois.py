"""IANA whois (port 43): asking for one TLD, and reading the answer under THE rule.

Owns the whois wire exchange (`query_whois`) and the pure reading of an answer (`parse_whois`), which
returns a `ParsedRecord` only for a record with `source: IANA`, the `domain`/`domain-ace` asked for, and
administrative and technical contacts that all have an e-mail address; anything else is an `Unusable`
naming what was wrong. The quirks handled here are all from real answers (see ../shared/notes/iana.md).
"""

from __future__ import annotations

import re
import socket
import time

from secirbot.iana.names import NotACcTLD, TldName, parse_tld
from secirbot.iana.record import ROLES, Contact, ParsedRecord, QueryFailed, Unusable, split_addresses

MAX_ANSWER_BYTES = 1_000_000  # an IANA record is ~2 kB; anything near this is not one
_KEY_LINE = re.compile(r"^([a-z][a-z0-9-]*):(.*)$")
_OBJECTS = re.compile(r"^%\s*This query returned (\d+) objects?", re.I)
_NOT_FOUND = re.compile(r"^\s*Domain \S+ not found\.", re.I | re.M)
_OLD_FORMAT = re.compile(r"^\s*(IANA (IPv6 )?Whois Service|Sponsoring Organization:)", re.I | re.M)
CONTACT_KEYS = frozenset({"name", "organisation", "address", "phone", "fax-no", "e-mail"})


def parse_whois(text: str, asked: TldName) -> ParsedRecord | Unusable:
    """Validate one whois.iana.org answer for `asked`. Never raises on any input text."""

    def bad(kind: str, detail: str) -> Unusable:
        return Unusable(kind, detail, text, "whois")

    body = text.lstrip("\ufeff")
    if not body.strip():
        return bad("empty", "the answer has no text")
    lines = [line.rstrip() for line in body.splitlines()]
    comments = [line for line in lines if line.startswith("%")]
    for line in comments:
        match = _OBJECTS.match(line)
        if match and match.group(1) == "0":
            return bad("not-found", f"whois.iana.org has no object for {asked.ascii.upper()}")
        if match and match.group(1) != "1":
            return bad("malformed", line.lstrip("% "))
        if "error" in line.lower():
            return bad("error", line.lstrip("% "))
    found = _NOT_FOUND.search(body)
    if found:
        return bad("not-found", found.group(0).strip())
    if _OLD_FORMAT.search(body):
        return bad("old-format", "'IANA Whois Service' layout used before 2010, not today's format")

    top: dict[str, list[str]] = {}
    blocks: list[tuple[str, dict[str, list[str]]]] = []
    current: dict[str, list[str]] | None = None
    for line in lines:
        match = _KEY_LINE.match(line)
        if not match:
            # '%' comments, blank lines, and the odd keyless continuation line (LK 2012 split a name over
            # three lines) carry nothing we use.
            continue
        key, value = match.group(1), match.group(2).strip()
        if key == "contact":
            current = {}
            blocks.append((value.lower(), current))
        elif current is not None and key in CONTACT_KEYS:
            current.setdefault(key, []).append(value)
        else:
            # A contact block ends at the first key that is not a contact field (nserver, whois, status...);
            # not at a blank line: LK 2012 has one inside a block.
            current = None
            top.setdefault(key, []).append(value)

    domains = top.get("domain", [])
    if not domains:
        if not top and not blocks:
            return bad("malformed", "no 'key: value' lines")
        return bad("malformed", "no 'domain:' line")
    if len(domains) > 1:
        return bad("malformed", f"{len(domains)} 'domain:' lines")
    sources = top.get("source", [])
    if not sources:
        return bad("truncated", "no 'source:' line: the answer stops before the end of the record")
    if [s.upper() for s in sources] != ["IANA"]:
        return bad("not-iana", f"source is {', '.join(sources)!r}, not IANA")
    problem = _check_domain(domains[0], top.get("domain-ace", []), asked)
    if problem:
        return bad("wrong-domain", problem)

    organisation = _join(top.get("organisation", []))
    if organisation.lower() == "not assigned":
        return bad("not-assigned", f"organisation: {organisation}")
    statuses = [s.upper() for s in top.get("status", [])]
    if "NEW" in statuses:
        return bad("new", "status: NEW (a newly delegated IDN ccTLD, contacts not yet published)")
    if statuses and statuses != ["ACTIVE"]:
        return bad("inactive", f"status: {', '.join(top['status'])}")

    contacts: list[Contact] = []
    for role, fields in blocks:
        emails = [e for e in fields.get("e-mail", []) if e]
        if not emails:
            what = "has no fields" if not fields else "has no e-mail"
            return bad("no-contact-email", f"the {role or 'unnamed'} contact {what}")
        for email in emails:
            addresses = split_addresses(email)
            if addresses is None:
                return bad("no-contact-email", f"the {role} contact's e-mail {email!r} is not an address")
            for address in addresses:
                contacts.append(
                    Contact(role, _join(fields.get("name", [])), _join(fields.get("organisation", [])), address)
                )
    missing = [role for role in ROLES if role not in {c.role for c in contacts}]
    if missing:
        return bad("no-contact-email", f"no {' and no '.join(missing)} contact")
    return ParsedRecord(asked, organisation, tuple(contacts))


def _check_domain(domain: str, aces: list[str], asked: TldName) -> str | None:
    """None if the record is about `asked`, else what it is about."""
    try:
        named = parse_tld(domain)
    except NotACcTLD:
        return f"domain {domain!r} is not a TLD"
    if named.ascii != asked.ascii:
        return f"asked for {asked.display()}, the record is for {domain!r}"
    if len(aces) > 1 or (aces and aces[0].lower() != asked.ascii):
        return f"asked for {asked.ascii}, the record's domain-ace is {', '.join(aces)!r}"
    if asked.is_idn and not aces:
        return f"the record for {asked.display()} has no domain-ace line"
    return None


def _join(values: list[str]) -> str:
    # MX, TL and CC have two 'organisation:' lines; IANA's own MX contact joins them with ", ".
    # "-" is how the TP record said "none".
    return ", ".join(v for v in values if v and v != "-")


# --- I/O --------------------------------------------------------------------------------------------


def split_endpoint(endpoint: str, default_port: int = 43) -> tuple[str, int]:
    """'host', 'host:port', '[v6]:port' -> (host, port)."""
    endpoint = endpoint.strip()
    if endpoint.startswith("["):
        host, _, rest = endpoint[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if endpoint.count(":") == 1:
        host, port = endpoint.split(":")
        return host, int(port)
    return endpoint, default_port


def query_whois(endpoint: str, ascii_tld: str, timeout: float) -> str:
    """Ask `endpoint` ("host:port") about one TLD; the whole answer as text.

    Sends the A-label and CRLF, reads to EOF within `timeout` seconds in total, decodes UTF-8 (archived
    pre-2010 answers were Latin-1: those are decoded as Latin-1 so the raw text survives for the audit)
    and drops a BOM. Raises QueryFailed('unreachable') for network trouble or a timeout.
    """
    host, port = split_endpoint(endpoint)
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(ascii_tld.encode("ascii") + b"\r\n")
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no complete answer within {timeout:g} s")
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise QueryFailed(
                        Unusable(
                            "malformed",
                            f"answer longer than {MAX_ANSWER_BYTES} bytes",
                            b"".join(chunks)[:4096].decode("utf-8", "replace"),
                            "whois",
                        )
                    )
    except QueryFailed:
        raise
    except (OSError, UnicodeError) as exc:
        partial = b"".join(chunks).decode("utf-8", "replace")
        strerror = exc.strerror if isinstance(exc, OSError) else None
        reason = "timed out" if isinstance(exc, TimeoutError) else strerror or str(exc) or type(exc).__name__
        raise QueryFailed(Unusable("unreachable", f"{host}:{port}: {reason}", partial, "whois")) from exc
    return decode_answer(b"".join(chunks))


def decode_answer(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.lstrip("\ufeff")
