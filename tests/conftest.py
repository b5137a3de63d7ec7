"""Shared pytest fixtures: the real mail servers every mail test talks to.

- ``dovecot`` (session): one private Dovecot IMAP server for the whole run, closed at the end.
- ``mailbox`` (function): a fresh, empty ``MailUser`` on that server for each test.
- ``smtp_sink`` (function): a fresh capturing SMTP server for each test.
- ``_whois_server``, ``_rdap_server``, ``_dns_server`` (session): the local IANA stand-ins with real records
  (tests/iana/helpers.py says which TLD answers what); function-scoped resets are in tests/iana/conftest.py
  and tests/harness.py.

The rigs live in ``secirbot/sandbox`` (the sandbox and the demo run on them too); see their docstrings.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from secirbot.sandbox.dovecot import Dovecot, MailUser
from secirbot.sandbox.iana_servers import DnsServer, RdapServer, WhoisServer
from secirbot.sandbox.smtp_sink import SmtpSink
from tests.iana.helpers import DATA, RDAP_FILES, WHOIS_FILES, whois_bytes

# The end-to-end `world` fixture (bot + Dovecot + sink + IANA stand-ins + clock) lives in tests/harness.py.
pytest_plugins = ["tests.harness"]

# One mailbox per test that asks for one; users cannot be added once Dovecot runs, so leave room.
DOVECOT_POOL_SIZE = 300


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot(pool_size=DOVECOT_POOL_SIZE)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def mailbox(dovecot: Dovecot) -> MailUser:
    # A test that stopped or killed the shared server and failed before restarting it must not
    # take the following tests down with it.
    if not dovecot.running:
        dovecot.start()
    return dovecot.new_user()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


# The servers live for the whole session (starting and stopping them per test cost more than the tests);
# each test gets them reset: counts at zero, no modes, no delays.

@pytest.fixture(scope="session")
def _whois_server() -> Iterator[WhoisServer]:
    with WhoisServer({tld: whois_bytes(name) for tld, name in WHOIS_FILES.items()}) as server:
        yield server


@pytest.fixture(scope="session")
def _rdap_server() -> Iterator[RdapServer]:
    answers = {tld: (DATA / "rdap" / name).read_bytes() for tld, name in RDAP_FILES.items()}
    with RdapServer(answers) as server:
        yield server


@pytest.fixture(scope="session")
def _dns_server() -> Iterator[DnsServer]:
    # Every TLD the whois server knows is "in the root", except two to show a False signal.
    with DnsServer(delegated=set(WHOIS_FILES) - {"eh", "va"}) as server:
        yield server


