"""ccTLD names: turning what a person types into one canonical name, and knowing which names are ccTLDs.

Owns `TldName` (lower-case A-label + U-label), the syntax rules for reading a TLD (".NL", "nl.", ".рф",
"XN--P1AI" all mean one thing) and the packaged ccTLD list `secirbot/data/cctlds.txt` (rebuilt by
`scripts/refresh_cctlds.py`). Pure: the only file it reads is that packaged list.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

import idna

DATA_PACKAGE = "secirbot"
DATA_FILE = "data/cctlds.txt"

# Statuses in the third column of cctlds.txt.
DELEGATED = "delegated"
NOT_ASSIGNED = "not-assigned"
RETIRED = "retired"
STATUSES = (DELEGATED, NOT_ASSIGNED, RETIRED)

_LDH_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Dots that IDNA (UTS #46) treats as label separators; people paste them from CJK text.
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
# Bidi marks come along when an Arabic or Hebrew TLD is copied from IANA's own pages (&#x200f;.مصر&#x200e;).
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


@dataclass(frozen=True, order=True)
class TldName:
    """A top-level domain: `ascii` is the lower-case A-label ("xn--p1ai"), `unicode` the U-label ("рф")."""

    ascii: str
    unicode: str

    @property
    def is_idn(self) -> bool:
        return self.ascii.startswith("xn--")

    def display(self) -> str:
        """'.nl', or '.рф (xn--p1ai)' for an IDN: both forms, so nobody has to guess."""
        return f".{self.unicode} ({self.ascii})" if self.is_idn else f".{self.ascii}"

    def __str__(self) -> str:
        return self.display()


class NotACcTLD(ValueError):
    """The text is not a ccTLD that can have approvers; str() is a message for a person."""


class NotDelegated(NotACcTLD):
    """A country code IANA knows but that has no manager: never delegated ('Not assigned') or retired."""

    def __init__(self, message: str, name: TldName, status: str):
        super().__init__(message)
        self.name = name
        self.status = status


def parse_tld(text: str) -> TldName:
    """Read one TLD in any spelling and return its canonical form, whether or not it is a ccTLD.

    Raises NotACcTLD for empty input, several labels, or text that is no valid DNS label.
    """
    raw = text
    text = _INVISIBLE.sub("", text).strip().translate(_DOTS)
    if text.startswith("."):
        text = text[1:]
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise NotACcTLD(f"no TLD given ({raw!r})" if raw.strip() else "no TLD given")
    if "." in text:
        last = text.rsplit(".", 1)[1]
        hint = f"; did you mean .{last}?" if last else ""
        raise NotACcTLD(f"{raw.strip()!r} has several labels: give a top-level domain such as .nl{hint}")
    if text.isascii():
        label = text.lower()
        if not _LDH_LABEL.match(label):
            raise NotACcTLD(f"{raw.strip()!r} is not a valid top-level domain name")
        if label.startswith("xn--"):
            try:
                ulabel = idna.decode(label)
            except idna.IDNAError as exc:
                raise NotACcTLD(f"{raw.strip()!r} is not a valid internationalised name: {exc}") from exc
            return TldName(label, ulabel)
        return TldName(label, label)
    try:
        alabel = idna.encode(text, uts46=True).decode("ascii").lower()
        ulabel = idna.decode(alabel)
    except (idna.IDNAError, UnicodeError) as exc:
        raise NotACcTLD(f"{raw.strip()!r} is not a valid internationalised name: {exc}") from exc
    if not alabel.startswith("xn--"):
        # UTS #46 maps full-width Latin ("ＮＬ") to plain ASCII: that is the ASCII TLD.
        return parse_tld(alabel)
    return TldName(alabel, ulabel)


@functools.cache
def _table() -> dict[str, tuple[TldName, str]]:
    text = resources.files(DATA_PACKAGE).joinpath(DATA_FILE).read_text(encoding="utf-8")
    return parse_cctld_table(text)


def parse_cctld_table(text: str) -> dict[str, tuple[TldName, str]]:
    """The cctlds.txt format: '#' comments; A-label TAB U-label TAB status. ValueError names the line."""
    table: dict[str, tuple[TldName, str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3 or parts[2] not in STATUSES:
            raise ValueError(f"{DATA_FILE}:{number}: expected 'A-label<TAB>U-label<TAB>status', got {line!r}")
        table[parts[0]] = (TldName(parts[0], parts[1]), parts[2])
    return table


def cctld_status(ascii_tld: str) -> str | None:
    """'delegated', 'not-assigned', 'retired', or None when IANA has no such country-code TLD."""
    entry = _table().get(ascii_tld.lower())
    return entry[1] if entry else None


def is_cctld(ascii_tld: str) -> bool:
    """True for a delegated ccTLD (two-letter ASCII or IDN ccTLD), by its A-label."""
    return cctld_status(ascii_tld) == DELEGATED


def all_cctlds() -> list[TldName]:
    """Every delegated ccTLD, sorted by A-label."""
    return sorted(name for name, status in _table().values() if status == DELEGATED)


def normalize_tld(text: str) -> TldName:
    """The delegated ccTLD that `text` names, e.g. '.NL' -> nl, '.рф' or 'XN--P1AI' -> xn--p1ai/рф.

    Raises NotDelegated for a country code without a manager (EH, UM, YU...), NotACcTLD for anything else
    that is not a delegated ccTLD (com, example, a generic IDN, junk, empty).
    """
    name = parse_tld(text)
    entry = _table().get(name.ascii)
    if entry is None:
        raise NotACcTLD(_not_cctld_message(name))
    known, status = entry
    if status == NOT_ASSIGNED:
        raise NotDelegated(
            f"{known.display()} is a country code that IANA lists as 'Not assigned': it is not "
            "delegated, has no manager and no contacts, so nobody can approve members for it",
            known,
            status,
        )
    if status == RETIRED:
        raise NotDelegated(
            f"{known.display()} is a retired ccTLD: IANA has removed it from the root zone, "
            "so nobody can approve members for it",
            known,
            status,
        )
    return known


def _not_cctld_message(name: TldName) -> str:
    if name.is_idn:
        return f"{name.display()} is not a country-code TLD: it is a generic internationalised TLD or not a TLD at all"
    if len(name.ascii) == 2 and name.ascii.isalpha():
        return (
            f"{name.display()} is not a ccTLD: IANA has no country-code TLD by that name (if IANA "
            "delegated it recently, refresh secirbot/data/cctlds.txt)"
        )
    return (
        f"{name.display()} is not a country-code TLD: ccTLDs are two letters (.nl) or an "
        "internationalised country name (.рф)"
    )
