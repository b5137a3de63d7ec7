"""Shared pytest fixtures: the real mail servers every mail test talks to.

- ``dovecot`` (session): one private Dovecot IMAP server for the whole run, closed at the end.
- ``mailbox`` (function): a fresh, empty ``MailUser`` on that server for each test.
- ``smtp_sink`` (function): a fresh capturing SMTP server for each test.

The rigs themselves live in ``tests/rigs``; see their module docstrings.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.rigs.dovecot import Dovecot, MailUser
from tests.rigs.smtp_sink import SmtpSink

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
