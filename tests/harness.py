"""The end-to-end test world: the bot configured against a real Dovecot mailbox, an aiosmtpd sink, the local
IANA stand-ins, a store in a temp dir, and a clock the test controls.

`World.run_once()` is `secirbot run --once` in-process (same Daemon, same code path), at the world's
clock. Helpers write requests and replies the way people and their mail clients do.
"""

from __future__ import annotations

import email.policy
import email.utils
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml

from secirbot.bot import Bot
from secirbot.config import load_config
from secirbot.daemon import Daemon, DrainReport
from secirbot.rules import load_rules
from secirbot.sandbox.dovecot import MailUser
from secirbot.sandbox.iana_servers import DnsServer, RdapServer, WhoisServer
from secirbot.sandbox.smtp_sink import Captured, SmtpSink
from secirbot.tokens import find_token
from secirbot.wiring import build

REPO = Path(__file__).resolve().parent.parent
BOT = "join@lists.example.org"
SECRETARIAT = "secretariat@example.org"
LIST = "secir@lists.example.org"
START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


class Clock:
    """A clock that moves only when the test says so."""

    def __init__(self, start: datetime = START):
        self.moment = start

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> datetime:
        self.moment += timedelta(**delta)
        return self.moment


def default_rules() -> dict[str, Any]:
    return {
        "pilot": {"enabled": True, "cctlds": ["nl", "fi", "рф", "jo", "gt", "mx"]},
        "approvers": {"roles": ["administrative", "technical"], "ask_first": ["administrative", "technical"]},
        "authentication": {"authserv_id": "mx.lists.example.org", "require": "none"},
        "requests": {"seats_per_cctld": 3, "max_per_cctld_per_hour": 3, "max_per_hour": 20},
        "outbox": {"retry_first": "1m", "retry_max": "1h", "give_up_after": "3d"},
    }


@dataclass
class World:
    root: Path
    mailbox: MailUser
    sink: SmtpSink
    whois: WhoisServer
    rdap: RdapServer
    dns: DnsServer
    clock: Clock = field(default_factory=Clock)
    rules: dict[str, Any] = field(default_factory=default_rules)
    settings: dict[str, Any] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)  # SECIRBOT_* overrides, e.g. a password
    _bot: Bot | None = None

    # --- configuration ---------------------------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.root / "secirbot.yaml"

    def write_config(self) -> Path:
        server = self.mailbox.server
        data = {
            "imap": {
                "host": server.host,
                "port": server.imap_port,
                "security": "none",
                "username": self.mailbox.name,
                "password": self.mailbox.password,
                "batch_size": 20,
            },
            "smtp": {"host": self.sink.host, "port": self.sink.port, "security": "none"},
            "addresses": {"bot": BOT, "secretariat": SECRETARIAT},
            "mailman": {"dialect": "mailman3", "list": LIST},
            "iana": {"whois": self.whois.endpoint, "rdap": self.rdap.base_url, "timeout_seconds": 2},
            "dns": {"nameservers": ["127.0.0.1"], "port": self.dns.port, "timeout_seconds": 1},
            "store": {"path": "var/secirbot.sqlite3"},
            "rules": "rules.yaml",
            "templates": str(REPO / "templates"),
        }
        for dotted, value in self.settings.items():
            if "." not in dotted:  # a top-level key: rules, templates
                data[dotted] = value
                continue
            section, key = dotted.split(".", 1)
            data.setdefault(section, {})[key] = value
        self.config_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        (self.root / "rules.yaml").write_text(yaml.safe_dump(self.rules, allow_unicode=True), encoding="utf-8")
        return self.config_file

    def bot(self) -> Bot:
        """The bot as `secirbot run` would build it, on this world's clock (rebuilt after config changes)."""
        if self._bot is None:
            config = load_config(self.write_config(), environ=dict(self.environ))
            self._bot = build(config, load_rules(config.rules), now=self.clock)
        return self._bot

    def reconfigure(self, **settings: Any) -> None:
        self.settings.update(settings)
        self.restart()

    def restart(self) -> None:
        """A new process: the same store and mailbox, nothing kept in memory."""
        if self._bot is not None:
            self._bot.store.close()
        self._bot = None

    def run_once(self) -> DrainReport:
        return Daemon(self.bot()).run_once()

    # --- mail in and out -------------------------------------------------------------------------

    def deliver(self, msg: EmailMessage | bytes) -> int:
        raw = msg if isinstance(msg, bytes) else msg.as_bytes(policy=email.policy.SMTP)
        return self.mailbox.append(raw)

    def sent(self, clear: bool = True) -> list[Captured]:
        out = self.sink.messages
        if clear:
            self.sink.clear()
        return out

    def sent_to(self, address: str, messages: list[Captured]) -> list[Captured]:
        return [m for m in messages if address.lower() in [r.lower() for r in m.rcpt_tos]]

    def request(
        self,
        sender: str = "Jan Jansen <jan@registry.example>",
        subject: str = "subscribe .nl",
        body: str = "Name: Jan Jansen\nRole: CSIRT lead\nI handle incidents for the registry.\n",
    ) -> int:
        msg = new_message(sender, BOT, subject, body)
        return self.deliver(msg)

    def approval_requests(self, messages: list[Captured]) -> dict[str, Captured]:
        """approver address (lower-case) -> the approval request it got."""
        out = {}
        for captured in messages:
            # The requester's acknowledgement carries a reply address too (for WITHDRAW): not an approval.
            subject = " ".join(str(captured.message["Subject"] or "").split())
            if not subject.startswith(("Approval needed:", "Reminder: Approval needed:")):
                continue
            if captured.message["Reply-To"] and find_token([captured.message["Reply-To"]], BOT):
                out[captured.rcpt_tos[0].lower()] = captured
        return out


def new_message(sender: str, to: str, subject: str, body: str, **headers: str) -> EmailMessage:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(START)
    msg["Message-ID"] = email.utils.make_msgid(domain="client.example")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


def reply_to(approval: Captured, sender: str, body: str, **headers: str) -> EmailMessage:
    """A plain reply as a mail client makes it: to the Reply-To, threaded, quoting the original with '>'."""
    original = approval.message
    quoted = "\n".join("> " + line for line in original.get_content().splitlines())
    msg = new_message(
        sender,
        original["Reply-To"],
        "Re: " + original["Subject"],
        f"{body}\n\nOn Thu, 26 Nov 2026 at 09:00, {BOT} wrote:\n{quoted}\n",
        In_Reply_To=original["Message-ID"],
        References=original["Message-ID"],
        **headers,
    )
    return msg


@pytest.fixture
def world(
    tmp_path_factory: pytest.TempPathFactory,
    mailbox: MailUser,
    smtp_sink: SmtpSink,
    _whois_server: WhoisServer,
    _rdap_server: RdapServer,
    _dns_server: DnsServer,
) -> Iterator[World]:
    for server in (_whois_server, _rdap_server, _dns_server):
        server.reset()
    w = World(tmp_path_factory.mktemp("world"), mailbox, smtp_sink, _whois_server, _rdap_server, _dns_server)
    try:
        yield w
    finally:
        w.restart()
