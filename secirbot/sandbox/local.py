"""The sandbox behind `secirbot run` when no real mailbox is configured: a throw-away Dovecot and an SMTP
sink on loopback, and the configuration rewritten to point at them. Mail sent by the bot is kept as
.eml files beside the store, so a person can read what the bot would have sent."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import Config, ImapConfig, SmtpConfig
from .dovecot import Dovecot, DovecotError, MailUser
from .smtp_sink import SmtpSink


class SandboxError(Exception):
    """The sandbox cannot start (Dovecot is not installed)."""


@dataclasses.dataclass
class Sandbox:
    dovecot: Dovecot
    user: MailUser
    sink: SmtpSink
    config: Config
    spool: Path

    @classmethod
    def start(cls, config: Config) -> Sandbox:
        dovecot = Dovecot(pool_size=2, user_prefix="bot")
        try:
            dovecot.start()
        except DovecotError as exc:
            raise SandboxError(
                f"the local sandbox needs Dovecot: {exc}. Install it "
                "(apt-get install dovecot-imapd) or configure imap.host"
            ) from exc
        user = dovecot.new_user()
        spool = config.store.path.parent / "sandbox-sent"
        sink = SmtpSink(spool=spool)
        sink.start()
        local = dataclasses.replace(
            config,
            imap=dataclasses.replace(
                ImapConfig(),
                host=dovecot.host,
                port=dovecot.imap_port,
                security="none",
                username=user.name,
                password=user.password,
            ),
            smtp=dataclasses.replace(SmtpConfig(), host=sink.host, port=sink.port, security="none"),
        )
        return cls(dovecot, user, sink, local, spool)

    def describe(self) -> str:
        return (
            f"sandbox: no imap.host configured, so the bot reads a throw-away local mailbox:\n"
            f"  IMAP  {self.dovecot.host}:{self.dovecot.imap_port}  user {self.user.name}  "
            f"password {self.user.password}  (append mail there with any IMAP client)\n"
            f"  SMTP  mail the bot sends is kept in {self.spool}/\n"
            f"  For a guided tour with a scripted requester and approver: secirbot demo"
        )

    def stop(self) -> None:
        self.sink.stop()
        self.dovecot.close()
