"""What IANA says about one ccTLD, once validated, and every way an answer can fail to be usable.

Owns `Contact`, `IanaRecord` (with the de-duplicated `approvers`), `Approver`, `Unusable` (with its kinds)
and `QueryFailed` (how the I/O functions report an answer that never came). Pure data, no I/O.

An `IanaRecord` exists only for an answer that passed every check of THE rule (source IANA, the domain
asked for, every contact with an e-mail address); anything else is an `Unusable`, which the bot must treat
as "cannot resolve now", never as "nobody needs to approve".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from secirbot.clock import from_iso, iso
from secirbot.iana.names import TldName

Source = Literal["whois", "rdap"]
ROLES = ("administrative", "technical")

# Why an answer is not usable. All mean "cannot resolve now" to the bot; `detail` says more.
UNUSABLE_KINDS = {
    "empty": "IANA sent an empty answer",
    "error": "IANA's server reported an error",
    "not-found": "IANA has no record for this name",
    "not-assigned": "IANA lists the code as 'Not assigned' (no manager, no contacts)",
    "new": "the ccTLD is NEW at IANA (contacts not yet published)",
    "inactive": "the record's status is not active",
    "old-format": "the answer is in the pre-2010 whois format",
    "wrong-domain": "the answer is about another domain",
    "no-contact-email": "a contact has no usable e-mail address",
    "not-iana": "the answer does not come from IANA",
    "truncated": "the answer is cut short",
    "malformed": "the answer cannot be read",
    "unreachable": "IANA's server could not be reached",
}

# One address. Deliberately loose (IANA publishes what managers give it) but never whitespace, commas or
# several '@': those mean the field holds more than one address, which `split_addresses` handles.
_ADDRESS = re.compile(r"^[^@\s<>,;()\[\]]+@[^@\s<>,;()\[\]]+\.[^@\s<>,;()\[\].]+$")
# Separators seen between several addresses in one e-mail field (2010-2011 records: "a, b", "a ; b",
# "a / b", "a or b").
_SEPARATORS = re.compile(r"\s*(?:[,;/]|\s+or\s+)\s*", re.I)


def split_addresses(value: str) -> list[str] | None:
    """The address(es) in one e-mail field, or None when any part is not an address."""
    value = value.strip()
    if not value:
        return None
    parts = [p for p in _SEPARATORS.split(value) if p]
    if not parts or not all(_ADDRESS.match(p) for p in parts):
        return None
    return parts


@dataclass(frozen=True)
class Contact:
    """One IANA contact and ONE of its addresses (a field listing two addresses gives two Contacts)."""

    role: str
    name: str
    organisation: str
    email: str


@dataclass(frozen=True)
class Approver:
    """One address that may approve, with every role IANA lists it under. Send to `email` as written."""

    email: str
    name: str
    roles: tuple[str, ...]

    @property
    def key(self) -> str:
        """For comparisons only: IANA's JO record writes AdminCCtld@..., a reply may come from admincctld@..."""
        return email_key(self.email)


def email_key(address: str) -> str:
    return address.strip().lower()


@dataclass(frozen=True)
class ParsedRecord:
    """The validated content of one answer, before the resolver adds source, time and the DNS check."""

    tld: TldName
    organisation: str
    contacts: tuple[Contact, ...]


@dataclass(frozen=True)
class IanaRecord:
    tld: TldName
    organisation: str
    contacts: tuple[Contact, ...]
    source: Source
    fetched_at: datetime
    raw: str = field(default="", repr=False)
    delegated: bool | None = None

    @classmethod
    def from_parsed(
        cls, parsed: ParsedRecord, source: Source, fetched_at: datetime, raw: str, delegated: bool | None
    ) -> IanaRecord:
        return cls(parsed.tld, parsed.organisation, parsed.contacts, source, fetched_at, raw, delegated)

    def approvers(self, roles: tuple[str, ...] | list[str] = ROLES) -> list[Approver]:
        """Addresses of the contacts in `roles`, once each (case-insensitively), in IANA's order.

        FI lists one address as administrative and technical contact: one approver with both roles.
        """
        merged: dict[str, tuple[str, str, list[str]]] = {}
        for contact in self.contacts:
            if contact.role not in roles:
                continue
            key = email_key(contact.email)
            if key not in merged:
                merged[key] = (contact.email, contact.name, [])
            if contact.role not in merged[key][2]:
                merged[key][2].append(contact.role)
        return [Approver(email, name, tuple(r)) for email, name, r in merged.values()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tld": self.tld.ascii,
            "tld_unicode": self.tld.unicode,
            "organisation": self.organisation,
            "contacts": [
                {"role": c.role, "name": c.name, "organisation": c.organisation, "email": c.email}
                for c in self.contacts
            ],
            "source": self.source,
            "fetched_at": iso(self.fetched_at),
            "delegated": self.delegated,
        }

    def to_json(self) -> str:
        """The store's `iana_snapshots.record` column (the raw answer has its own column)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, raw: str = "") -> IanaRecord:
        data = json.loads(text)
        return cls(
            tld=TldName(data["tld"], data["tld_unicode"]),
            organisation=data["organisation"],
            contacts=tuple(Contact(c["role"], c["name"], c["organisation"], c["email"]) for c in data["contacts"]),
            source=data["source"],
            fetched_at=from_iso(data["fetched_at"]),
            raw=raw,
            delegated=data.get("delegated"),
        )


@dataclass(frozen=True)
class Unusable:
    """An answer (or the absence of one) that yields no approvers. `kind` is one of UNUSABLE_KINDS."""

    kind: str
    detail: str
    raw: str = field(default="", repr=False)
    source: Source | None = None

    def __post_init__(self) -> None:
        if self.kind not in UNUSABLE_KINDS:
            raise ValueError(f"unknown Unusable kind {self.kind!r}")

    @property
    def summary(self) -> str:
        where = f"IANA {self.source}" if self.source else "IANA"
        return f"{where}: {UNUSABLE_KINDS[self.kind]} ({self.kind}: {self.detail})"

    def to_json(self) -> str:
        """The store's `iana_snapshots.problem` column."""
        return json.dumps({"kind": self.kind, "detail": self.detail}, ensure_ascii=False, sort_keys=True)


class QueryFailed(Exception):
    """A query got no answer to parse (network trouble, HTTP error); carries the Unusable to record."""

    def __init__(self, problem: Unusable):
        super().__init__(problem.summary)
        self.problem = problem
