"""Whether the From of a reply is authentic enough for the reply to decide anything.

Owns: reading the From address (exactly one addr-spec, compared with the approver's address, never the
display name); trusting only the top-most Authentication-Results header written under our own
authserv-id, and reading its DMARC results with `authres`; verifying DKIM signatures locally with `dkimpy`
under our own stricter rules (From signed, no l= body length, no rsa-sha1, d= aligned with the From
domain by organisational domain from the Public Suffix List); and the `authentication.require` policy
(none | dmarc | dkim). Pure apart from the injected DNS function; `make_dnsfunc` builds the production
one on dnspython with the configured resolver.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import authres
import dkim
import dns.exception
import dns.resolver
from dkim.util import InvalidTagValueList, parse_tag_value
from publicsuffixlist import PublicSuffixList

from secirbot.config import DnsConfig
from secirbot.message import InboundMail, same_address

REQUIRE_LEVELS = ("none", "dmarc", "dkim")

# DMARC results that mean the From domain's owner disowns the message. Some receivers write the policy
# they applied (quarantine, reject) as the result instead of "fail".
_DMARC_FAIL = frozenset({"fail", "quarantine", "reject"})

DnsFunc = Callable[[bytes], bytes]


@dataclass(frozen=True)
class SenderCheck:
    ok: bool
    failure: str | None  # short reason for the audit when not ok
    checks: dict[str, str] = field(default_factory=dict)  # what was checked -> what was found
    rule: str | None = None  # which check failed, as a code (see check_sender)


def check_sender(
    mail: InboundMail,
    *,
    expected_from: str,
    authserv_id: str | None,
    require: str,
    dnsfunc: DnsFunc | None,
    token_header: str | None = None,
) -> SenderCheck:
    """Does the reply come from `expected_from`, as far as policy `require` can tell? Hostile headers and
    signatures make it fail, not raise.

    `token_header` names the header the reply's token was read from when that is one the sender wrote (To
    or Cc, not our server's envelope header). Under dmarc and dkim it must then appear once and be signed
    by the aligned DKIM signature that passes: a DMARC pass says nothing about a To added on top of a
    genuine signed mail, which would re-aim the approver's APPROVE at another request."""
    checks: dict[str, str] = {}
    # Failure codes: policy-unknown, from-unreadable, from-mismatch, dmarc-fail, dmarc-required, dkim-required.

    def fail(reason: str, rule: str) -> SenderCheck:
        return SenderCheck(ok=False, failure=reason, checks=checks, rule=rule)

    if require not in REQUIRE_LEVELS:
        return fail(f"unknown authentication.require {require!r}", "policy-unknown")
    address, problem = from_address(mail)
    if address is None:
        checks["from"] = problem
        return fail(problem, "from-unreadable")
    if not same_address(address, expected_from):
        checks["from"] = f"{address} is not {expected_from}"
        return fail(f"From {address} is not the approver's address {expected_from}", "from-mismatch")
    checks["from"] = "matches"
    from_domain = _domain_of(address)

    dmarc = trusted_dmarc(mail, authserv_id, from_domain)
    checks["authres"] = dmarc.summary
    if dmarc.failed:
        return fail(f"our server's Authentication-Results: {dmarc.summary}", "dmarc-fail")
    if require == "none":
        return SenderCheck(ok=True, failure=None, checks=checks)
    if require == "dmarc" and dmarc.passed and token_header is None:
        return SenderCheck(ok=True, failure=None, checks=checks)
    must_sign = ["from"]
    if token_header is not None:
        copies = len(mail.message.get_all(token_header) or [])
        checks["token"] = f"read from {token_header} ({copies} cop{'y' if copies == 1 else 'ies'})"
        if copies != 1:
            return fail(f"the token's {token_header} header appears {copies} times", "token-header-unsigned")
        must_sign.append(token_header.lower())

    signed, summary = aligned_dkim(mail.raw, from_domain, dnsfunc, must_sign=tuple(must_sign))
    checks["dkim"] = summary
    if signed:
        return SenderCheck(ok=True, failure=None, checks=checks)
    if token_header is not None and dmarc.passed:
        return fail(
            f"DMARC passed, but no aligned DKIM signature covers {token_header}, which carries the token",
            "token-header-unsigned",
        )
    if require == "dmarc":
        return fail("neither a DMARC pass from our server nor an aligned DKIM signature", "dmarc-required")
    return fail("no valid DKIM signature aligned with the From domain", "dkim-required")


# --- From ---------------------------------------------------------------------------------------------


def from_address(mail: InboundMail) -> tuple[str | None, str]:
    """(the one addr-spec of the From header, '') or (None, why it cannot be read as exactly one).
    The reading itself is message.strict_from's, the same for every kind of mail."""
    return mail.from_addr, mail.from_problem


def _domain_of(address: str) -> str | None:
    local, _, domain = address.rpartition("@")
    return _ascii_domain(domain) if local else None


def _ascii_domain(domain: str) -> str | None:
    domain = domain.strip().rstrip(".").lower()
    if not domain:
        return None
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None


# --- Authentication-Results --------------------------------------------------------------------------


@dataclass(frozen=True)
class DmarcReading:
    summary: str
    passed: bool = False  # dmarc=pass for the From domain
    failed: bool = False  # dmarc=fail (or unreadable: we cannot tell it did not say fail)


_AUTHSERV_ID = re.compile(r"^\s*(?:\([^()]*\)\s*)*([^\s;()]+)")


def trusted_dmarc(mail: InboundMail, authserv_id: str | None, from_domain: str | None) -> DmarcReading:
    """The DMARC verdict of the top-most Authentication-Results header written under our authserv-id."""
    if not authserv_id:
        return DmarcReading("not trusted: no authserv_id configured")
    ours = authserv_id.strip().lower()
    for raw in mail.message.get_all("Authentication-Results") or []:
        value = re.sub(r"\r?\n[ \t]*", " ", str(raw)).strip()
        match = _AUTHSERV_ID.match(value)
        if not match or match.group(1).lower() != ours:
            continue
        # Only this first one: our server strips inbound copies claiming its id, so any below it were
        # written by someone else.
        return _read_dmarc(value, ours, from_domain)
    return DmarcReading(f"no Authentication-Results from {authserv_id}")


def _read_dmarc(value: str, ours: str, from_domain: str | None) -> DmarcReading:
    try:
        header = authres.all_features().parse_value(value)
    except Exception as exc:  # authres raises its own SyntaxError and others on malformed values
        return DmarcReading(f"unreadable Authentication-Results from {ours}: {exc}", failed=True)
    if (header.authserv_id or "").lower() != ours:
        return DmarcReading(f"unreadable Authentication-Results from {ours}", failed=True)
    readings = []
    passed = failed = False
    for result in header.results:
        if str(result.method).lower() != "dmarc":
            continue
        verdict = str(result.result).lower()
        header_from = _ascii_domain(str(getattr(result, "header_from", None) or ""))
        readings.append(f"dmarc={verdict} header.from={header_from or '?'}")
        failed |= verdict in _DMARC_FAIL
        passed |= verdict == "pass" and header_from is not None and header_from == from_domain
    if not readings:
        return DmarcReading(f"no dmarc result from {ours}")
    return DmarcReading("; ".join(readings), passed=passed and not failed, failed=failed)


# --- DKIM --------------------------------------------------------------------------------------------


def aligned_dkim(
    raw: bytes, from_domain: str | None, dnsfunc: DnsFunc | None, must_sign: tuple[str, ...] = ("from",)
) -> tuple[bool, str]:
    """(True, note) if one DKIM signature verifies, signs From, has no l= and a d= aligned with the From
    domain; else (False, what each signature lacked). Never raises."""
    if dnsfunc is None:
        return False, "not checked: no DNS function for DKIM keys"
    if not from_domain:
        return False, "no From domain"
    try:
        headers = dkim.DKIM(raw).headers
    except Exception as exc:  # dkimpy's own header parser rejects some messages outright
        return False, f"message not parseable for DKIM: {exc}"
    signatures = [value for name, value in headers if name.lower() == b"dkim-signature"]
    if not signatures:
        return False, "no DKIM signature"
    notes = []
    for idx, value in enumerate(signatures):
        ok, note = _check_signature(raw, idx, value, from_domain, dnsfunc, must_sign)
        if ok:
            return True, note
        notes.append(note)
    return False, "; ".join(notes)


def _check_signature(
    raw: bytes, idx: int, value: bytes, from_domain: str, dnsfunc: DnsFunc, must_sign: tuple[str, ...]
) -> tuple[bool, str]:
    try:
        tags = parse_tag_value(value)
    except InvalidTagValueList as exc:
        return False, f"signature {idx + 1}: unreadable ({exc})"
    domain = tags.get(b"d", b"").decode("ascii", "replace").strip().lower()
    label = f"d={domain or '?'}"
    signed = {h.strip().lower() for h in re.split(rb"\s*:\s*", re.sub(rb"\s+", b"", tags.get(b"h", b"")))}
    # dkimpy verifies all of these; our policy does not accept them.
    for name in must_sign:
        if name.encode("ascii") not in signed:
            return False, f"fail {label}: {name.title()} is not signed"
    if b"l" in tags:
        return False, f"fail {label}: l= limits the signed body, text may be appended"
    if tags.get(b"a", b"").strip().lower() == b"rsa-sha1":
        return False, f"fail {label}: rsa-sha1 (RFC 8301)"
    if not is_aligned(domain, from_domain):
        return False, f"fail {label}: not aligned with {from_domain}"
    notes = _Notes()
    try:
        verified = dkim.DKIM(raw, logger=notes).verify(idx=idx, dnsfunc=lambda name, timeout=5: dnsfunc(name))
    except Exception as exc:  # DKIMException, DNS errors, anything a hostile signature can provoke
        return False, f"fail {label}: {type(exc).__name__}: {exc}"
    if not verified:
        why = notes.last or "signature does not verify"
        return False, f"fail {label}: {why}"
    return True, f"pass {label}"


def is_aligned(signing_domain: str, from_domain: str) -> bool:
    """DMARC relaxed alignment: the same domain, or the same organisational domain (never a public
    suffix: d=co.uk aligns with nothing under co.uk)."""
    d, f = _ascii_domain(signing_domain), _ascii_domain(from_domain)
    if not d or not f:
        return False
    if d == f:
        return True
    org_d, org_f = _psl().privatesuffix(d), _psl().privatesuffix(f)
    return org_d is not None and org_d == org_f


@functools.cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


class _Notes:
    """A logger for dkimpy that keeps its last error: dkimpy reports key problems only by logging."""

    def __init__(self) -> None:
        self.last: str | None = None

    def error(self, msg: object, *args: object, **kwargs: object) -> None:
        try:
            self.last = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            self.last = str(msg)

    warning = exception = critical = error

    def debug(self, msg: object, *args: object, **kwargs: object) -> None:
        pass

    info = debug


# --- DNS ---------------------------------------------------------------------------------------------


class DnsLookupError(Exception):
    """A DKIM key could not be looked up (not: the key does not exist)."""


def make_dnsfunc(config: DnsConfig) -> DnsFunc:
    """A TXT lookup for DKIM keys through the configured resolver (system resolver if none listed).
    Returns b'' when the name has no TXT record; raises DnsLookupError when DNS cannot answer."""
    if not config.enabled:

        def disabled(name: bytes) -> bytes:
            raise DnsLookupError("DNS lookups are disabled (dns.enabled is false)")

        return disabled
    try:
        resolver = dns.resolver.Resolver(configure=not config.nameservers)
    except dns.resolver.NoResolverConfiguration as exc:
        problem = f"no DNS resolver configured: {exc}"

        def unconfigured(name: bytes) -> bytes:
            raise DnsLookupError(problem)

        return unconfigured
    if config.nameservers:
        resolver.nameservers = list(config.nameservers)
    resolver.port = config.port
    resolver.timeout = resolver.lifetime = float(config.timeout_seconds)

    def lookup(name: bytes) -> bytes:
        qname = name.decode("ascii", "strict")
        try:
            answer = resolver.resolve(qname, "TXT", raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return b""
        except dns.exception.DNSException as exc:
            raise DnsLookupError(f"{qname}: {type(exc).__name__}: {exc}") from exc
        records = [b"".join(rdata.strings) for rdata in answer.rrset or []]
        keys = [record for record in records if b"p=" in record]
        return (keys or records or [b""])[0]

    return lookup
