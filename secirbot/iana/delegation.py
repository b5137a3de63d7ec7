"""Is a ccTLD delegated in the root zone: a DNS sanity signal recorded with each IANA snapshot.

Owns the one DNS question the IANA lookup asks (`<tld>. NS`) and how its outcomes map to True (NS
present), False (NXDOMAIN or no NS: not in the root) and None (DNS not reachable or disabled: unknown).
It never decides who may approve; a False next to a usable IANA record is a warning for a person.
"""

from __future__ import annotations

import dns.exception
import dns.resolver

from secirbot.config import DnsConfig


def make_resolver(config: DnsConfig) -> dns.resolver.Resolver:
    """A resolver for `config`: its nameservers and port, or the system's when none are given."""
    if config.nameservers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = list(config.nameservers)
    else:
        resolver = dns.resolver.Resolver(configure=True)
    resolver.port = config.port
    resolver.timeout = float(config.timeout_seconds)
    resolver.lifetime = float(config.timeout_seconds)
    return resolver


def is_delegated(ascii_tld: str, dns_config: DnsConfig) -> bool | None:
    """True if the root delegates `ascii_tld` (NS answer), False if not, None when it cannot be told."""
    if not dns_config.enabled:
        return None
    try:
        resolver = make_resolver(dns_config)
        answer = resolver.resolve(f"{ascii_tld.lower()}.", "NS", search=False)
    except dns.resolver.NXDOMAIN:
        return False
    except dns.resolver.NoAnswer:
        # The name exists but has no NS of its own, i.e. it is not a delegation point.
        return False
    except (dns.exception.DNSException, OSError):
        # LifetimeTimeout, NoNameservers (SERVFAIL/REFUSED everywhere), no resolv.conf, socket errors.
        return None
    return len(answer) > 0
