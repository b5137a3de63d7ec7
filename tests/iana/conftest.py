"""Fixtures for the IANA tests: local whois, RDAP and DNS servers loaded with the records in ./data
(see helpers.py for which TLD answers what), a real `Config` pointing `iana.whois`, `iana.rdap` and `dns`
at them, and a real `Store` in a temp dir.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from secirbot.config import Config, DnsConfig, IanaConfig
from secirbot.iana.resolver import IanaResolver
from secirbot.sandbox.iana_servers import DnsServer, RdapServer, WhoisServer
from secirbot.store import Store


@pytest.fixture
def whois_server(_whois_server: WhoisServer) -> WhoisServer:
    _whois_server.reset()
    return _whois_server


@pytest.fixture
def rdap_server(_rdap_server: RdapServer) -> RdapServer:
    _rdap_server.reset()
    return _rdap_server


@pytest.fixture
def dns_server(_dns_server: DnsServer) -> DnsServer:
    _dns_server.reset()
    return _dns_server


@pytest.fixture
def config(whois_server: WhoisServer, rdap_server: RdapServer, dns_server: DnsServer) -> Config:
    return Config(
        iana=IanaConfig(whois=whois_server.endpoint, rdap=rdap_server.base_url, timeout_seconds=2),
        dns=DnsConfig(nameservers=("127.0.0.1",), port=dns_server.port, timeout_seconds=1),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(tmp_path / "secirbot.sqlite3")
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def resolver(config: Config, store: Store) -> IanaResolver:
    return IanaResolver(config, store)
