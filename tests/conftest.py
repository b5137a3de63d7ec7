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

import os
import time
from collections.abc import Iterator

import pytest

from secirbot.sandbox.dovecot import Dovecot, MailUser
from secirbot.sandbox.iana_servers import DnsServer, RdapServer, WhoisServer
from secirbot.sandbox.mailman import Mailman3, MailmanError, find_venv, mailman_binary
from secirbot.sandbox.smtp_sink import SmtpSink
from tests.iana.helpers import DATA, RDAP_FILES, WHOIS_FILES, whois_bytes

# The end-to-end `world` fixture (bot + Dovecot + sink + IANA stand-ins + clock) lives in tests/harness.py.
pytest_plugins = ["tests.harness"]

# One mailbox per test that asks for one; users cannot be added once Dovecot runs, so leave room (the
# suite uses about 350; creating a user costs a passwd line and an empty folder).
DOVECOT_POOL_SIZE = 1000


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


# One real Mailman 3 for the whole session (~600 MiB): tests/test_mailman3.py and tests/test_rest_url.py.
@pytest.fixture(scope="session")
def mailman3(request: pytest.FixtureRequest) -> Iterator[Mailman3]:
    venv = find_venv()
    try:
        mailman_binary(venv)
    except MailmanError as exc:
        if os.environ.get("SECIRBOT_TEST_REQUIRE_MAILMAN") == "1":
            pytest.fail(f"SECIRBOT_TEST_REQUIRE_MAILMAN=1, but: {exc}", pytrace=False)
        pytest.skip(f"Mailman 3 end-to-end tests skipped: {exc}")
    server = Mailman3(venv)
    server.start()
    try:
        yield server
    finally:
        began = time.monotonic()
        server.close()
        stopped_in = time.monotonic() - began
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        line = (
            f"Mailman 3: REST up {server.started_in:.1f} s after `mailman start`; stopped in "
            f"{stopped_in:.1f} s; peak RSS {server.peak_rss / 2**20:.0f} MiB over "
            f"{server.peak_processes} processes (PSS {server.peak_pss / 2**20:.0f} MiB)"
        )
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line("")
                reporter.write_line(line)
