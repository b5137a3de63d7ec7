"""Policy from `rules.yaml`: who may ask, who may approve, how replies are authenticated, the timings.

Pinned keys: `pilot: {enabled, cctlds}`, `approvers: {roles, delegates: {allow, objection_window}}`,
`authentication: {authserv_id, require}` (require: none | dmarc | dkim | adaptive, the default; adaptive is
resolved per approver by dmarc_policy), `languages: {default, by_cctld, bilingual}` (the language of the
mail to a ccTLD's contacts), `revet: {every}`, `invitations: {min_interval}`.
Every key is documented in the shipped `rules.yaml`. Loading reuses the config loader, so errors name the
file, the line and the key. A rule that ties keys together (ask_first within roles, authserv_id for a strict
require, retry_first up to retry_max, cctlds for an enabled pilot) names both keys, where the other is set,
and the fix; `rules.yaml` explains each beside its keys.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml

from .compose import Language, available_languages
from .config import ConfigError, YamlSource, build_section, read_yaml
from .iana.names import NotACcTLD, parse_tld

ROLES = ("administrative", "technical")


@dataclass(frozen=True)
class PilotRules:
    enabled: bool = True
    cctlds: tuple[str, ...] = ()


@dataclass(frozen=True)
class DelegateRules:
    # A person answering with a role contact's token from their own address (section "Delegated answers"
    # of the README): allowed when every condition holds; an APPROVE waits out the objection window.
    allow: bool = True
    objection_window: timedelta = timedelta(hours=48)


@dataclass(frozen=True)
class ApproverRules:
    roles: tuple[str, ...] = ROLES
    ask_first: tuple[str, ...] = ROLES
    delegates: DelegateRules = field(default_factory=DelegateRules)


@dataclass(frozen=True)
class AuthenticationRules:
    authserv_id: str | None = None
    # adaptive: dmarc where the approver's domain publishes p=quarantine/reject, else none (dmarc_policy).
    require: Literal["none", "dmarc", "dkim", "adaptive"] = "adaptive"
    dmarc_cache: timedelta = timedelta(hours=1)  # how long a DMARC policy answer is kept in memory


@dataclass(frozen=True)
class RequestRules:
    seats_per_cctld: int = 3
    max_per_cctld_per_hour: int = 3
    max_per_hour: int = 20
    expire_after: timedelta = timedelta(days=14)
    claim_max_chars: int = 600
    replies_per_sender_per_day: int = 1
    replies_per_hour: int = 60  # help and refusal replies to anyone, in total: forged senders get no flood
    unknown_tokens_per_hour: int = 20  # replies to unknown token addresses before the Secretariat is alerted


@dataclass(frozen=True)
class DecisionRules:
    tell_requester_deny_reason: bool = False


@dataclass(frozen=True)
class ReminderRules:
    first_after: timedelta = timedelta(days=3)
    every: timedelta = timedelta(days=3)
    max: int = 2


@dataclass(frozen=True)
class EscalationRules:
    after: timedelta = timedelta(days=7)
    on_bounce: bool = True
    on_auto_reply: bool = True


@dataclass(frozen=True)
class LookupRules:
    retry_every: timedelta = timedelta(hours=1)
    tell_secretariat_after: timedelta = timedelta(days=1)
    recheck_every: timedelta = timedelta(days=1)


@dataclass(frozen=True)
class DigestRules:
    enabled: bool = True
    day_of_week: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    hour: int = 8


@dataclass(frozen=True)
class OutboxRules:
    retry_first: timedelta = timedelta(minutes=1)
    retry_max: timedelta = timedelta(hours=1)
    give_up_after: timedelta = timedelta(days=3)


@dataclass(frozen=True)
class MailmanRules:
    reject_unvetted: bool = False
    check_pending_every: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class InvitationRules:
    # `secirbot invite` for a ccTLD invited less than this long ago needs `--again`: a second mail to the
    # same administrative contacts within weeks reads as spam to exactly the people we want on the list.
    min_interval: timedelta = timedelta(days=30)


LANGUAGE_TABLE = Path(__file__).resolve().parent / "data" / "languages.yaml"


@functools.cache
def default_languages() -> Mapping[str, str]:
    """ccTLD (A-label) -> its country's main official language, where secirbot has a catalog for it."""
    data = yaml.safe_load(LANGUAGE_TABLE.read_text(encoding="utf-8")) or {}
    return {str(k).lower(): str(v) for k, v in data.items()}


@dataclass(frozen=True)
class LanguageRules:
    default: str = "en"
    by_cctld: tuple[tuple[str, str], ...] = ()  # (A-label, language) pairs from rules.yaml
    bilingual: bool = True  # the local text first, the English text below it, in the same mail

    def code_for(self, cctld: str) -> str:
        """rules.yaml's language for this ccTLD, else its country's (where a catalog exists), else default."""
        try:
            name = parse_tld(cctld).ascii
        except NotACcTLD:
            return self.default
        chosen = dict(self.by_cctld).get(name) or default_languages().get(name) or self.default
        return chosen if chosen in available_languages() else self.default

    def for_cctld(self, cctld: str) -> Language:
        """How to write to the IANA contacts of `cctld`."""
        return Language(self.code_for(cctld), self.bilingual)


@dataclass(frozen=True)
class RevetRules:
    # How often each ccTLD's IANA contacts get the list of its members to confirm (and at once when its
    # contacts change); see confirmations.py.
    every: timedelta = timedelta(days=365)


@dataclass(frozen=True)
class Rules:
    pilot: PilotRules = field(default_factory=PilotRules)
    approvers: ApproverRules = field(default_factory=ApproverRules)
    authentication: AuthenticationRules = field(default_factory=AuthenticationRules)
    requests: RequestRules = field(default_factory=RequestRules)
    decisions: DecisionRules = field(default_factory=DecisionRules)
    reminders: ReminderRules = field(default_factory=ReminderRules)
    escalation: EscalationRules = field(default_factory=EscalationRules)
    lookups: LookupRules = field(default_factory=LookupRules)
    digest: DigestRules = field(default_factory=DigestRules)
    outbox: OutboxRules = field(default_factory=OutboxRules)
    mailman: MailmanRules = field(default_factory=MailmanRules)
    invitations: InvitationRules = field(default_factory=InvitationRules)
    revet: RevetRules = field(default_factory=RevetRules)
    languages: LanguageRules = field(default_factory=LanguageRules)


def load_rules(path: Path) -> Rules:
    """Read and validate rules.yaml. Raises ConfigError naming file, line and key."""
    source = read_yaml(path)
    problems: list[str] = []
    data = source.data
    languages = LanguageRules()
    if isinstance(data, dict) and "languages" in data:
        # by_cctld is a mapping, which the generic section builder does not read: built here.
        data = {k: v for k, v in data.items() if k != "languages"}
        languages = _languages(source.data["languages"], source, problems)
    rules = build_section(Rules, data, (), source, path.parent, problems)
    rules = dataclasses.replace(rules, languages=languages)
    approvers = source.data.get("approvers") if isinstance(source.data, dict) else None
    if not problems and not (isinstance(approvers, dict) and "ask_first" in approvers):
        # ask_first left out: ask every role that may approve (a rules.yaml that narrows roles to
        # [administrative] must not fail on the default ask_first naming technical too).
        rules = dataclasses.replace(
            rules, approvers=dataclasses.replace(rules.approvers, ask_first=rules.approvers.roles)
        )
    if not problems:
        problems = _check(rules, source)
    if problems:
        raise ConfigError(problems)
    return rules


def _languages(raw: Any, source: YamlSource, problems: list[str]) -> LanguageRules:
    key = ("languages",)
    if raw is None:
        return LanguageRules()
    if not isinstance(raw, dict):
        problems.append(f"{source.where(key)}: languages: must be a mapping")
        return LanguageRules()
    known = available_languages()
    hint = f"(catalogs: {', '.join(known)})"

    def language(value: Any, sub: tuple[str, ...]) -> str | None:
        code = str(value).strip().lower() if isinstance(value, str) else None
        if code not in known:
            problems.append(f"{source.where(sub)}: {'.'.join(sub)}: unknown language {value!r} {hint}")
            return None
        return code

    plain = {k: v for k, v in raw.items() if k != "by_cctld"}
    built = build_section(LanguageRules, plain, key, source, Path("."), problems)
    default = language(built.default, (*key, "default")) or "en"
    pairs: list[tuple[str, str]] = []
    by_cctld = raw.get("by_cctld")
    if by_cctld is not None and not isinstance(by_cctld, dict):
        problems.append(f"{source.where((*key, 'by_cctld'))}: languages.by_cctld: must be a mapping of ccTLD: language")
    for cctld, value in (by_cctld or {}).items():
        sub = (*key, "by_cctld", str(cctld))
        try:
            name = parse_tld(str(cctld)).ascii
        except NotACcTLD as exc:
            problems.append(f"{source.where(sub)}: {'.'.join(sub)}: {exc}")
            continue
        code = language(value, sub)
        if code is not None:
            pairs.append((name, code))
    return LanguageRules(default=default, by_cctld=tuple(pairs), bilingual=built.bilingual)


def _check(rules: Rules, source: YamlSource) -> list[str]:
    problems = []

    def need(cond: bool, key: tuple[str, ...], message: str) -> None:
        if not cond:
            problems.append(f"{source.where(key)}: {'.'.join(key)}: {message}")

    for key, roles in (
        (("approvers", "roles"), rules.approvers.roles),
        (("approvers", "ask_first"), rules.approvers.ask_first),
    ):
        unknown = [r for r in roles if r not in ROLES]
        need(not unknown, key, f"unknown role(s) {', '.join(unknown)} (IANA roles: {', '.join(ROLES)})")
    need(bool(rules.approvers.roles), ("approvers", "roles"), "at least one role must be allowed to approve")
    # Cross-key rules: each message names both keys, where the other one is set, and how to resolve it.
    not_allowed = [r for r in rules.approvers.ask_first if r not in rules.approvers.roles]
    need(
        not not_allowed,
        ("approvers", "ask_first"),
        f"names {', '.join(not_allowed)}, which approvers.roles ({source.at(('approvers', 'roles'))}: "
        f"{', '.join(rules.approvers.roles)}) does not allow to approve; the roles asked first must be allowed"
        " to approve: add them to approvers.roles, take them out of ask_first, or leave ask_first out to ask"
        " every role in approvers.roles",
    )
    need(
        bool(rules.approvers.ask_first),
        ("approvers", "ask_first"),
        "at least one role must be asked: name one, or leave ask_first out to ask every role in approvers.roles",
    )
    # Not for adaptive: with no trusted header it still asks for an aligned DKIM signature where the policy
    # is enforcing, and it is the default, which must load with the shipped authserv_id: null.
    require = rules.authentication.require
    need(
        require not in ("dmarc", "dkim") or bool(rules.authentication.authserv_id),
        ("authentication", "authserv_id"),
        f"required because authentication.require is {require} ({source.at(('authentication', 'require'))}):"
        " without it no Authentication-Results header is trusted, so your server's DMARC verdict can neither"
        " pass nor refuse a reply; set it to the authserv-id your receiving server writes, or use"
        " require: adaptive",
    )
    need(rules.requests.seats_per_cctld >= 1, ("requests", "seats_per_cctld"), "must be at least 1")
    need(rules.requests.expire_after > timedelta(0), ("requests", "expire_after"), "must be positive")
    need(0 <= rules.digest.hour <= 23, ("digest", "hour"), "must be 0-23")
    need(
        rules.outbox.retry_first <= rules.outbox.retry_max,
        ("outbox", "retry_first"),
        f"must not be longer than outbox.retry_max ({source.at(('outbox', 'retry_max'))}: "
        f"{_duration(rules.outbox.retry_max)}): the wait before a retry starts at retry_first and doubles up to"
        " retry_max; shorten retry_first or lengthen retry_max",
    )
    if rules.pilot.enabled:
        need(
            bool(rules.pilot.cctlds),
            ("pilot", "cctlds"),
            f"empty while pilot.enabled is true ({source.at(('pilot', 'enabled'))}): every request would be"
            " refused; list the invited ccTLDs here, or set pilot.enabled: false to admit every ccTLD",
        )
    return problems


def _duration(value: timedelta) -> str:
    """A duration as rules.yaml writes it (90s, 30m, 12h, 3d, 2w), the largest unit that divides it."""
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
