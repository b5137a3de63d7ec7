"""IANA RDAP (RFC 9083): asking `{base}/domain/{tld}`, and reading the JSON under THE rule.

Owns the HTTP exchange (`query_rdap`) and the pure reading of a domain object (`parse_rdap`): the
registrant entity gives the manager, entities with role `administrative` / `technical` give the contacts
from their jCard (RFC 7095: `fn`, `org`, `email`). RDAP has no `source:` field: that the answer is IANA's
rests on the configured endpoint (`iana.rdap`, HTTPS to rdap.iana.org with certificate checks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from secirbot.iana.names import NotACcTLD, TldName, parse_tld
from secirbot.iana.record import ROLES, Contact, ParsedRecord, QueryFailed, Unusable, split_addresses

MAX_ANSWER_BYTES = 1_000_000


def parse_rdap(json_text: str, asked: TldName) -> ParsedRecord | Unusable:
    """Validate one RDAP domain answer for `asked`. Never raises on any input text."""

    def bad(kind: str, detail: str) -> Unusable:
        return Unusable(kind, detail, json_text, "rdap")

    if not json_text.strip():
        return bad("empty", "the answer has no text")
    try:
        data = json.loads(json_text.lstrip("\ufeff"))
    except ValueError as exc:
        return bad("malformed", f"not JSON: {exc}")
    if not isinstance(data, dict):
        return bad("malformed", "the JSON is not an object")
    if "errorCode" in data:
        # RFC 9083 section 6: an error response body.
        code = data.get("errorCode")
        title = data.get("title") or " ".join(str(d) for d in data.get("description") or [])
        return bad("not-found" if code == 404 else "error", f"errorCode {code}: {title}".strip(": "))
    conformance = data.get("rdapConformance")
    if not isinstance(conformance, list) or "rdap_level_0" not in conformance:
        return bad("malformed", "no rdapConformance 'rdap_level_0': not an RDAP answer")
    if data.get("objectClassName") != "domain":
        return bad("malformed", f"objectClassName is {data.get('objectClassName')!r}, not 'domain'")
    problem = _check_domain(data, asked)
    if problem:
        return bad("wrong-domain", problem)
    status = data.get("status")
    if status is not None and (not isinstance(status, list) or "active" not in [str(s).lower() for s in status]):
        return bad("inactive", f"status: {status!r}")

    entities = data.get("entities")
    if not isinstance(entities, list):
        return bad("no-contact-email", "no entities")
    organisation = ""
    contacts: list[Contact] = []
    for entity in entities:
        if not isinstance(entity, dict):
            return bad("malformed", "an entity is not an object")
        roles = [str(r).lower() for r in entity.get("roles") or [] if isinstance(r, str)]
        card = _vcard(entity.get("vcardArray"))
        if card is None:
            if any(r in ROLES or r == "registrant" for r in roles):
                return bad("malformed", f"the {'/'.join(roles)} entity has no readable vcardArray")
            continue
        name, org, emails = _first(card, "fn"), _org(card), _all(card, "email")
        if "registrant" in roles:
            organisation = org or name
        for role in roles:
            if role not in ROLES:
                continue
            if not emails:
                if (org or name).lower() == "not assigned":
                    return bad("not-assigned", f"the {role} entity is 'Not assigned'")
                return bad("no-contact-email", f"the {role} entity has no email")
            for email in emails:
                addresses = split_addresses(email)
                if addresses is None:
                    return bad("no-contact-email", f"the {role} entity's email {email!r} is not an address")
                contacts.extend(Contact(role, name, org, a) for a in addresses)
    if organisation.lower() == "not assigned":
        return bad("not-assigned", f"registrant: {organisation}")
    missing = [role for role in ROLES if role not in {c.role for c in contacts}]
    if missing:
        return bad("no-contact-email", f"no {' and no '.join(missing)} entity")
    return ParsedRecord(asked, organisation, tuple(contacts))


def _check_domain(data: dict[str, Any], asked: TldName) -> str | None:
    ldh = data.get("ldhName")
    if not isinstance(ldh, str) or not ldh.strip():
        return "no ldhName"
    try:
        named = parse_tld(ldh)
    except NotACcTLD:
        return f"ldhName {ldh!r} is not a TLD"
    if named.ascii != asked.ascii:
        return f"asked for {asked.display()}, the answer is for {ldh!r}"
    uname = data.get("unicodeName")
    if uname is not None:
        try:
            if not isinstance(uname, str) or parse_tld(uname).ascii != asked.ascii:
                return f"asked for {asked.display()}, unicodeName is {uname!r}"
        except NotACcTLD:
            return f"unicodeName {uname!r} is not a TLD"
    return None


def _vcard(value: Any) -> list[list[Any]] | None:
    """The property list of a jCard ["vcard", [[name, params, type, value...], ...]], or None."""
    if (
        isinstance(value, list)
        and len(value) == 2
        and value[0] == "vcard"
        and isinstance(value[1], list)
        and all(isinstance(p, list) and len(p) >= 4 and isinstance(p[0], str) for p in value[1])
    ):
        return value[1]
    return None


def _text(value: Any) -> str:
    # A structured value (org with units, adr) is a list of components.
    if isinstance(value, list):
        return ", ".join(t for t in (_text(v) for v in value) if t)
    return str(value).strip() if value is not None else ""


def _all(card: list[list[Any]], name: str) -> list[str]:
    return [t for t in (_text(p[3:] if len(p) > 4 else p[3]) for p in card if p[0].lower() == name) if t]


def _first(card: list[list[Any]], name: str) -> str:
    values = _all(card, name)
    return values[0] if values else ""


def _org(card: list[list[Any]]) -> str:
    return ", ".join(_all(card, "org"))


# --- I/O --------------------------------------------------------------------------------------------


def query_rdap(base_url: str, ascii_tld: str, timeout: float, ca_file: str | Path | None = None) -> str:
    """GET `{base_url}/domain/{ascii_tld}` and return the body of a 200 answer.

    Raises QueryFailed: 'not-found' for 404, 'error' for any other HTTP status, 'unreachable' for
    network trouble or a timeout. `ca_file` pins the CA bundle (tests, staging); default: system CAs.
    """
    # Imported here: requests costs ~60 ms at import, a tenth of the daemon's start, for what is by default
    # the fallback source, queried from the lookup thread.
    import requests

    url = f"{base_url.rstrip('/')}/domain/{ascii_tld}"
    try:
        response = requests.get(
            url,
            timeout=timeout,
            verify=str(ca_file) if ca_file else True,
            headers={"Accept": "application/rdap+json, application/json"},
        )
        body = response.content
    except requests.RequestException as exc:
        raise QueryFailed(Unusable("unreachable", f"{url}: {type(exc).__name__}: {exc}", "", "rdap")) from exc
    text = body.decode("utf-8", "replace")
    if response.status_code == 404:
        raise QueryFailed(Unusable("not-found", f"{url}: HTTP 404", text, "rdap"))
    if response.status_code != 200:
        raise QueryFailed(Unusable("error", f"{url}: HTTP {response.status_code} {response.reason}", text, "rdap"))
    if len(body) > MAX_ANSWER_BYTES:
        raise QueryFailed(Unusable("malformed", f"answer longer than {MAX_ANSWER_BYTES} bytes", text[:4096], "rdap"))
    return text
