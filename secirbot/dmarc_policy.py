"""The `adaptive` authentication level: how much a reply must prove depends on the approver's DMARC policy.

Owns: DMARC policy discovery for an approver's domain (RFC 7489 section 6.6.3: `_dmarc.<domain>`, then the
organisational domain from the Public Suffix List with its `sp=`), the strict reading of the record, the
choice of the effective `authentication.require` level for one reply, the in-memory cache of DNS answers,
the production TXT lookup on dnspython with the configured resolver, and the `secirbot check` warning about
what the configured level leaves exposed.

Why adaptive is safe to make the default: a domain that publishes p=quarantine or p=reject has declared
that its genuine mail passes DMARC (or it would be rejected or filed as spam everywhere), so requiring a
DMARC pass for its approvers costs no genuine reply, and takes the decision away from a leaked token plus
a forged From. Where the domain publishes nothing or p=none, its genuine mail may not pass, so requiring it
would refuse real approvers: there the level stays `none`.

Pure apart from the injected TXT lookup; `make_txt_lookup` builds the production one. The checks
themselves (trusted Authentication-Results, aligned DKIM) stay in secirbot.authenticity.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, cast

import dns.exception
import dns.resolver
from dkim.util import DuplicateTag, InvalidTagValueList, parse_tag_value
from publicsuffixlist import PublicSuffixList

from secirbot.config import DnsConfig

if TYPE_CHECKING:
    from secirbot.config import Config
    from secirbot.rules import Rules

ADAPTIVE = "adaptive"
POLICIES = ("none", "quarantine", "reject")
# Policies under which the domain's own mail must pass DMARC to be delivered: only these raise the level.
ENFORCING = ("quarantine", "reject")

Policy = Literal["none", "quarantine", "reject"]
TxtLookup = Callable[[str], list[bytes]]
"""All TXT records at a name, each one's strings joined; [] when the name or the record does not exist.
Raises DmarcLookupError when DNS cannot answer (timeout, SERVFAIL): that is not the same as no record."""

# RFC 7489 section 6.6.3 step 2: a record counts only if it starts with the version tag. The tag name is
# case-insensitive (ABNF), "DMARC1" is not (%x44.4d.41.52.43.31).
_VERSION = re.compile(rb"^\s*[vV]\s*=\s*DMARC1\s*(;|$)")


class DmarcLookupError(Exception):
    """DNS could not say whether a DMARC record exists (not: it does not exist)."""


class RecordError(ValueError):
    """A TXT record that starts with v=DMARC1 but whose tag list cannot be read."""


@dataclass(frozen=True)
class Found:
    """What policy discovery found for one domain."""

    policy: Policy | None  # the policy that applies to the domain; None: no usable one
    fail_closed: bool  # we could not tell what the domain asks for
    note: str  # where it came from, or why there is none, for the audit


@dataclass(frozen=True)
class Effective:
    """The level a reply is checked at, and why (None when the configured level was not adaptive)."""

    level: str
    note: str | None = None


# --- pure: reading records ------------------------------------------------------------------------------


def is_dmarc_record(txt: bytes) -> bool:
    """Does this TXT record claim to be a DMARC record (v=DMARC1 as its first tag)?"""
    return _VERSION.match(txt) is not None


def parse_record(txt: bytes) -> dict[str, str]:
    """The tags of a DMARC record, names lower-cased. Raises RecordError if it is not a DMARC record or its
    tag list is malformed (RFC 6376 section 3.2 grammar, which RFC 7489 section 6.3 uses; a duplicate tag is
    malformed too: a receiver could take either value)."""
    if not is_dmarc_record(txt):
        raise RecordError("does not start with v=DMARC1")
    try:
        raw = parse_tag_value(txt)
    except DuplicateTag as exc:
        raise RecordError(f"duplicate tag {_text(exc.args[0] if exc.args else b'')}") from exc
    except InvalidTagValueList as exc:
        spec = _text(exc.args[0] if exc.args else b"")
        raise RecordError(f"{spec!r} is not a tag=value" if spec else "empty tag between two ';'") from exc
    tags: dict[str, str] = {}
    for name, value in raw.items():
        key = name.decode("ascii", "replace").lower()
        if key in tags:  # "P=none; p=reject": the same tag twice once case is folded
            raise RecordError(f"duplicate tag {key}")
        tags[key] = value.decode("ascii", "replace").strip()
    return tags


def _text(value: object) -> str:
    raw = value if isinstance(value, bytes) else str(value).encode()
    return raw.strip().decode("ascii", "replace")[:80]


def record_policy(tags: dict[str, str], *, subdomain: bool) -> Policy | None:
    """The policy a record sets for the domain it was found for (`sp=` when it was found at the
    organisational domain of a subdomain); None if p= or sp= is not a valid policy (RFC 7489 section 6.6.3
    step 6: then no DMARC policy applies, or p=none, which comes to the same here).

    pct= is ignored on purpose: it only samples which failing messages a receiver acts on, so a forger can
    simply send again until one falls outside the sample; and the domain has still declared that its
    genuine mail passes. Requiring the pass for every reply costs its genuine approvers nothing."""
    p = tags.get("p", "").lower()
    sp = tags.get("sp", "").lower() if "sp" in tags else None
    if p not in POLICIES or (sp is not None and sp not in POLICIES):
        return None
    return cast(Policy, sp if subdomain and sp is not None else p)  # both checked against POLICIES above


def discover(domain: str, lookup: TxtLookup, org_domain: Callable[[str], str | None] | None = None) -> Found:
    """RFC 7489 section 6.6.3 policy discovery for `domain` (ASCII, no trailing dot). Never raises."""
    org_of = org_domain or organisational_domain
    name = f"_dmarc.{domain}"
    subdomain = False
    try:
        records = [r for r in lookup(name) if is_dmarc_record(r)]
        if not records:
            org = org_of(domain)
            if org and org != domain:
                name, subdomain = f"_dmarc.{org}", True
                records = [r for r in lookup(name) if is_dmarc_record(r)]
    except DmarcLookupError as exc:
        return Found(None, True, f"DNS cannot answer for {name} ({exc})")
    if not records:
        tried = f"_dmarc.{domain}" + (f" nor {name}" if subdomain else "")
        return Found(None, False, f"no DMARC record at {tried}")
    if len(records) > 1:
        # Step 5: more than one record ends discovery with no policy, so receivers enforce neither record.
        return Found(None, False, f"{len(records)} DMARC records at {name}: none is valid (RFC 7489 6.6.3)")
    try:
        tags = parse_record(records[0])
    except RecordError as exc:
        # Receivers differ here (section 6.3 lets them ignore syntax errors and apply p= all the same), so
        # we cannot tell whether the domain's mail must pass: fail closed.
        return Found(None, True, f"DMARC record at {name} unreadable ({exc})")
    policy = record_policy(tags, subdomain=subdomain)
    if policy is None:
        shown = "; ".join(f"{k}={tags[k]}" for k in ("p", "sp") if k in tags) or "no p="
        return Found(None, False, f"DMARC record at {name} has no valid policy ({shown})")
    tag = "sp" if subdomain and "sp" in tags else "p"
    return Found(policy, False, f"{tag}={policy} at {name}" + (f" for {domain}" if subdomain else ""))


def choose_level(found: Found) -> Effective:
    """Under adaptive: dmarc where the domain's policy is enforcing or cannot be known, else none."""
    if found.fail_closed:
        return Effective("dmarc", f"{found.note}: treated as dmarc (fail closed)")
    if found.policy in ENFORCING:
        return Effective("dmarc", f"{found.note}: dmarc required")
    return Effective("none", f"{found.note}: token and From suffice")


def organisational_domain(domain: str) -> str | None:
    """The registrable domain (RFC 7489 section 3.2) from the Public Suffix List; None for a public suffix."""
    return _psl().privatesuffix(domain)


@functools.cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # ~0.2 s to build: only when a subdomain first needs the fall-back


def ascii_domain(address: str) -> str | None:
    """The domain of an address in ASCII (A-labels), lower-case, no trailing dot; None if there is none."""
    local, _, domain = address.rpartition("@")
    domain = domain.strip().rstrip(".").lower()
    if not local or not domain:
        return None
    try:
        return domain if domain.isascii() else domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None


# --- the one entry point ----------------------------------------------------------------------------------


class DmarcPolicies:
    """Resolves `authentication.require` for one approver. `lookup` None means DNS is switched off by
    configuration (dns.enabled: false)."""

    def __init__(self, lookup: TxtLookup | None, org_domain: Callable[[str], str | None] | None = None) -> None:
        self.lookup = lookup
        self.org_domain = org_domain

    def effective(self, require: str, approver: str) -> Effective:
        """The level to check a reply from `approver` at, and a note for the audit under adaptive.
        Levels other than adaptive are returned as they are, with no lookup and no note."""
        if require != ADAPTIVE:
            return Effective(require)
        if self.lookup is None:
            # The operator turned DNS off (the demo, air-gapped setups): nothing is unknown by accident, and
            # with DNS off no DKIM key can be fetched either, so dmarc would refuse every reply. `secirbot
            # check` warns about this on a production configuration.
            return Effective("none", "not looked up: dns.enabled is false: token and From suffice")
        domain = ascii_domain(approver)
        if domain is None:
            return Effective("dmarc", f"no domain in {approver!r}: treated as dmarc (fail closed)")
        return choose_level(discover(domain, self.lookup, self.org_domain))


# --- I/O: the cache and the resolver ----------------------------------------------------------------------


class CachedLookup:
    """Keeps answers (an empty one too) for `ttl` by the bot's clock; a DNS failure is not kept, so the next
    reply asks again. Approver domains come from IANA, not from senders, so the cache stays small; the
    bound is only a guard."""

    MAX_ENTRIES = 1024

    def __init__(self, lookup: TxtLookup, ttl: timedelta, now: Callable[[], datetime]) -> None:
        self.lookup, self.ttl, self.now = lookup, ttl, now
        self.entries: dict[str, tuple[datetime, list[bytes]]] = {}
        self.lock = threading.Lock()

    def __call__(self, name: str) -> list[bytes]:
        key = name.lower().rstrip(".")
        moment = self.now()
        with self.lock:
            hit = self.entries.get(key)
            if hit is not None and hit[0] > moment:
                return list(hit[1])
        answer = self.lookup(name)  # outside the lock: a slow resolver must not hold up other names
        if self.ttl > timedelta(0):
            with self.lock:
                if len(self.entries) >= self.MAX_ENTRIES:
                    self.entries = {k: v for k, v in self.entries.items() if v[0] > moment}
                    while len(self.entries) >= self.MAX_ENTRIES:
                        self.entries.pop(next(iter(self.entries)))
                self.entries[key] = (moment + self.ttl, list(answer))
        return answer


def make_txt_lookup(config: DnsConfig) -> TxtLookup | None:
    """All TXT records at a name through the configured resolver (the system one if none is listed); None
    when dns.enabled is false. authenticity.make_dnsfunc returns one record only, which cannot tell the two
    records that make a DMARC policy invalid."""
    if not config.enabled:
        return None
    try:
        resolver = dns.resolver.Resolver(configure=not config.nameservers)
    except dns.resolver.NoResolverConfiguration as exc:
        problem = f"no DNS resolver configured: {exc}"

        def unconfigured(name: str) -> list[bytes]:
            raise DmarcLookupError(problem)

        return unconfigured
    if config.nameservers:
        resolver.nameservers = list(config.nameservers)
    resolver.port = config.port
    resolver.timeout = resolver.lifetime = float(config.timeout_seconds)

    def lookup(name: str) -> list[bytes]:
        try:
            answer = resolver.resolve(name, "TXT", raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return []
        except dns.exception.DNSException as exc:  # timeout, SERVFAIL (NoNameservers), malformed answers
            raise DmarcLookupError(f"{type(exc).__name__}: {exc}") from exc
        return [b"".join(rdata.strings) for rdata in answer.rrset or []]

    return lookup


def build_policies(config: Config, rules: Rules, now: Callable[[], datetime]) -> DmarcPolicies | None:
    """The bot's resolver of `adaptive`, or None when the rules do not use it (no lookups, no cache)."""
    if rules.authentication.require != ADAPTIVE:
        return None
    lookup = make_txt_lookup(config.dns)
    if lookup is not None:
        lookup = CachedLookup(lookup, rules.authentication.dmarc_cache, now)
    return DmarcPolicies(lookup)


# --- secirbot check ---------------------------------------------------------------------------------------


def authentication_warnings(config: Config, rules: Rules) -> list[str]:
    """What a production configuration's authentication leaves to the reply token alone, in a line or two
    each; nothing for the sandbox (no imap.host), whose mail is all local."""
    if config.sandbox:
        return []
    auth = rules.authentication
    out = []
    if not auth.authserv_id and auth.require == "none":
        out.append(
            "authentication.require is none and no authserv_id is set: a leaked reply token plus a forged "
            "From decides a request for every approver; use adaptive (the default) and set authserv_id"
        )
    elif not auth.authserv_id and auth.require == ADAPTIVE:
        out.append(
            "authentication.authserv_id is not set, so no Authentication-Results is trusted: for approvers "
            "whose domain publishes no DMARC quarantine/reject policy, a leaked reply token plus a forged "
            "From decides a request"
        )
    if auth.require == ADAPTIVE and not config.dns.enabled:
        out.append(
            "dns.enabled is false: authentication.require adaptive cannot look up DMARC policies and acts "
            "as none for every approver"
        )
    return out


def print_authentication_warnings(config: Config, rules: Rules) -> None:
    """`secirbot check`: each warning as the other configuration warnings are printed."""
    for warning in authentication_warnings(config, rules):
        print(f"warning: {warning}")
