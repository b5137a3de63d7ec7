"""The root NS sanity check, over a real UDP DNS server on loopback (secirbot.sandbox.iana_servers.DnsServer)."""

from __future__ import annotations

import time

from secirbot.config import DnsConfig
from secirbot.iana.delegation import is_delegated
from secirbot.sandbox.iana_servers import DnsServer, free_port


def dns(server_port: int, **kw: object) -> DnsConfig:
    return DnsConfig(nameservers=("127.0.0.1",), port=server_port, timeout_seconds=1, **kw)


def test_delegated_tld_has_ns() -> None:
    with DnsServer({"nl", "xn--p1ai"}) as server:
        assert is_delegated("nl", dns(server.port)) is True
        assert is_delegated("xn--p1ai", dns(server.port)) is True
        assert server.counts["nl."] == 1


def test_undelegated_tld_is_nxdomain() -> None:
    with DnsServer({"nl"}) as server:
        assert is_delegated("eh", dns(server.port)) is False


def test_unreachable_resolver_is_unknown_not_false() -> None:
    with DnsServer({"nl"}) as server:
        server.drop = True
        started = time.monotonic()
        assert is_delegated("nl", dns(server.port)) is None
        assert time.monotonic() - started < 3


def test_nobody_listening_is_unknown() -> None:
    assert is_delegated("nl", dns(free_port())) is None


def test_disabled_check_asks_nothing() -> None:
    with DnsServer({"nl"}) as server:
        assert is_delegated("nl", dns(server.port, enabled=False)) is None
        assert sum(server.counts.values()) == 0
