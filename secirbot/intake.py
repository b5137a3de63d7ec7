"""A new request: what it claims (ccTLD, name, own words) and whether the rules let it through.

Pure: the caller passes the facts from the store (`Facts`); nothing here reads or writes anything. A
request names its ccTLD as ".nl" (or ".рф", ".xn--p1ai") anywhere in the subject or first lines, as the
word after "subscribe"/"join" in the subject, or on a "ccTLD: nl" line. The subject wins over the body,
because signatures and quoted text in the body mention other domains.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from importlib import resources

from .iana.names import NotACcTLD, NotDelegated, TldName, normalize_tld
from .message import InboundMail
from .rules import Rules

BODY_LINES = 20
# Combining marks (Unicode Mn/Mc): \w does not match them, yet 16 IDN ccTLDs need them (.భారత్, .ভারত,
# .இந்தியா ...). All of them are in the Basic Multilingual Plane.
_MARKS = "".join(re.escape(chr(c)) for c in range(0x0300, 0x10000) if unicodedata.category(chr(c)) in ("Mn", "Mc"))
_LABEL = rf"(?:xn--)?[^\W\d_][\w{_MARKS}-]*"
_DOTTED = re.compile(rf"(?<![\w.@/-])\.({_LABEL})(?![\w{_MARKS}-]|\.\w)", re.UNICODE)
# "subscribe nl" / "join .dk" as the whole subject. "me" and "us" are ccTLDs but far likelier English
# ("subscribe me"): those two must be written with their dot.
_KEYWORD_ARG = re.compile(rf"^\s*(?:subscribe|join)\s+\.?({_LABEL})\s*[.!]?\s*$", re.IGNORECASE | re.UNICODE)
_NOT_BARE_TLDS = frozenset({"me", "us"})
_LABELLED = re.compile(rf"^\s*(?:cc)?tld\s*[:=]\s*\.?({_LABEL})\s*$", re.IGNORECASE | re.UNICODE)
_FIELD = re.compile(r"^\s*(name|role|organi[sz]ation)\s*:\s*(.+?)\s*$", re.IGNORECASE)
# Pinned: a line `replacing ADDRESS` (a colon allowed, the address bare or in <>).
_REPLACING = re.compile(r"^\s*replacing\s*:?\s*<?([^\s<>@]+@[^\s<>@]+?)>?\s*[.,;]?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Claim:
    """What a requester says about themselves. None of it is verified: the approvers judge it."""

    cctld: TldName
    name: str
    role: str
    words: str  # their own text, for the approvers, cut to the configured length
    replacing: str | None = None  # a line `replacing ADDRESS`: the member this requester takes over from


@dataclass(frozen=True)
class ClaimProblem:
    reason: str  # no-cctld | several-cctlds | not-cctld | address-form (set by the pipeline)
    names: tuple[str, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class Facts:
    """What the store knows that the checks need; gathered by the caller."""

    open_request_id: int | None  # the requester's open request, if any
    open_request_cctld: str | None
    member_request_id: int | None  # the requester's approved request, if they are a member (0: not admitted here)
    seats_used: int  # members plus open requests for the ccTLD
    cctld_last_hour: int  # requests created for the ccTLD in the last hour
    all_last_hour: int  # requests created in the last hour
    replacing: str | None = None  # the member of the same ccTLD this request would replace (past the seat cap)
    replacing_problem: str | None = None  # why the `replacing` line names nobody who can be replaced


@dataclass(frozen=True)
class Refusal:
    rule: str  # pilot | already-member | already-pending | replacing-not-member | seats-full | rate-cctld | rate-global
    detail: str


def read_claim(mail: InboundMail, text: str, max_chars: int) -> Claim | ClaimProblem:
    """The ccTLD and details a request names. `text` is the sender's new text (`newtext.new_text`)."""
    lines = _body_lines(text)
    subject_names = _names_in(mail.subject, subject=True)
    found = subject_names if subject_names[0] or subject_names[1] else _names_in("\n".join(lines), subject=False)
    cctlds, others = found
    if len(cctlds) == 1:
        (cctld,) = cctlds
    elif len(cctlds) > 1:
        return ClaimProblem("several-cctlds", tuple(sorted(n.unicode for n in cctlds)))
    elif others:
        return ClaimProblem("not-cctld", tuple(sorted(others)))
    else:
        return ClaimProblem("no-cctld")
    fields: dict[str, str] = {}
    for line in lines:
        match = _FIELD.match(line)
        if match:
            fields.setdefault(match.group(1).lower()[:5], match.group(2))
    words = "\n".join(lines).strip()
    replacing = next((m.group(1) for m in map(_REPLACING.match, lines) if m), None)
    return Claim(
        cctld=cctld,
        name=_clean(fields.get("name") or mail.from_name or "", 120),
        role=_clean(fields.get("role", ""), 120),
        # Kept a little longer than relayed, so the approvers' copy can show that it was cut.
        words=words[: max_chars + 200],
        replacing=replacing,
    )


def _body_lines(text: str) -> list[str]:
    """The first BODY_LINES non-empty lines of the new text (`newtext` has cut quotes and signatures)."""
    out: list[str] = []
    filled = 0
    for line in (text or "").splitlines():
        out.append(line.rstrip())
        filled += bool(line.strip())
        if filled >= BODY_LINES:
            break
    return out


def _names_in(text: str, subject: bool) -> tuple[set[TldName], set[str]]:
    """(ccTLDs named, other TLDs named) in a text."""
    text = unicodedata.normalize("NFKC", text)
    candidates = [m.group(1) for m in _DOTTED.finditer(text)]
    if subject:
        candidates += [m.group(1) for m in _KEYWORD_ARG.finditer(text) if m.group(1).lower() not in _NOT_BARE_TLDS]
    candidates += [m.group(1) for line in text.splitlines() for m in [_LABELLED.match(line)] if m]
    cctlds: set[TldName] = set()
    others: set[str] = set()
    for candidate in candidates:
        try:
            cctlds.add(normalize_tld(candidate))
        except NotDelegated as exc:  # a country code without a manager (.eh, .um): say so, not "none"
            others.add(exc.name.display())
        except NotACcTLD:
            if _is_tld(candidate):
                others.add("." + candidate.lower())
    return cctlds, others


@cache
def _all_tlds() -> frozenset[str]:
    text = resources.files("secirbot").joinpath("data/tlds-alpha-by-domain.txt").read_text("utf-8")
    return frozenset(ln.strip().lower() for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))


def _is_tld(label: str) -> bool:
    try:
        ascii_label = label.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return False
    return ascii_label in _all_tlds()


def _clean(text: str, width: int) -> str:
    text = "".join(ch for ch in text if ch.isprintable())
    return " ".join(text.split())[:width]


def check(claim: Claim, rules: Rules, facts: Facts) -> Refusal | None:
    """The first rule that refuses this request, or None. Order: the cheapest to explain first."""
    pilot = rules.pilot
    if pilot.enabled and claim.cctld.ascii not in pilot_cctlds(rules):
        return Refusal("pilot", f".{claim.cctld.unicode} is not among the ccTLDs invited to the pilot")
    if facts.member_request_id is not None:
        how = f"request {facts.member_request_id}" if facts.member_request_id else "on the list before secirbot"
        return Refusal("already-member", f"already a member ({how})")
    if facts.open_request_id is not None:
        return Refusal("already-pending", f"request {facts.open_request_id} is still open")
    if facts.replacing_problem is not None:
        return Refusal("replacing-not-member", facts.replacing_problem)
    if facts.seats_used >= rules.requests.seats_per_cctld and facts.replacing is None:
        return Refusal(
            "seats-full",
            f"all {rules.requests.seats_per_cctld} seats for .{claim.cctld.unicode} are taken or requested",
        )
    if facts.cctld_last_hour >= rules.requests.max_per_cctld_per_hour:
        return Refusal("rate-cctld", f"{facts.cctld_last_hour} requests for .{claim.cctld.unicode} in the last hour")
    if facts.all_last_hour >= rules.requests.max_per_hour:
        return Refusal("rate-global", f"{facts.all_last_hour} requests in the last hour")
    return None


def pilot_cctlds(rules: Rules) -> frozenset[str]:
    """The pilot's ccTLDs as A-labels (rules.yaml may write them as '.nl', 'рф', 'XN--P1AI')."""
    out = set()
    for name in rules.pilot.cctlds:
        try:
            out.add(normalize_tld(name).ascii)
        except NotACcTLD:
            continue  # `secirbot check` reports these; a request for them is refused as not invited
    return frozenset(out)


def hour_window(now: datetime) -> datetime:
    return now - timedelta(hours=1)
