"""Owns the SMTP sink that stands in for the outgoing mail server in tests.

:class:`SmtpSink` is a real ``aiosmtpd`` server running in its own thread on 127.0.0.1. It
captures every accepted message (envelope plus raw data, parsed with ``email.policy.default``)
and can be told to misbehave so that retry paths get exercised against real SMTP replies:
temporary or permanent DATA failures (:meth:`SmtpSink.fail_next`), refused recipients
(:meth:`SmtpSink.reject_recipient`) and connections closed at the DATA command
(:meth:`SmtpSink.drop_connections`).

:meth:`SmtpSink.deliver_locally` makes it also the MTA in front of a mailbox: mail for one address (and its
``local+detail@`` sub-addresses, as Postfix's ``recipient_delimiter = +`` does) is appended there too, so that a
mail sent through the sink can be seen arriving over IMAP (`secirbot check --connect`'s probe mail).

Optional transport security mirrors the bot's ``smtp.security`` setting: ``"tls"`` (implicit TLS,
as on port 465) or ``"starttls"``; optional AUTH PLAIN/LOGIN with one fixed login.
"""

from __future__ import annotations

import collections
import dataclasses
import email
import email.policy
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from .ports import LOOPBACK, free_port

Security = Literal["none", "tls", "starttls"]


@dataclasses.dataclass(frozen=True)
class Captured:
    """One message the sink accepted (250 after DATA)."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # as received, CRLF line ends, dot-stuffing removed
    message: EmailMessage  # parsed from ``data`` with LF line ends, email.policy.default
    tls: bool = False  # the session was encrypted (implicit TLS or after STARTTLS)
    login: str | None = None  # the AUTH user, if the client authenticated


class _Handler:
    """aiosmtpd hooks; runs in the controller's thread, so shared state is behind ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.captured: list[Captured] = []
        self.data_replies: collections.deque[str] = collections.deque()
        self.rcpt_replies: dict[str, str] = {}
        self.drops = 0
        self.attempts = 0
        self.credentials: tuple[str, str] | None = None
        self.spool: Path | None = None
        self.local: dict[str, Callable[[bytes], object]] = {}  # address -> where its mail is delivered

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        with self.lock:
            reply = self.rcpt_replies.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.attempts += 1
            if self.data_replies:
                return self.data_replies.popleft()
        raw = envelope.original_content or b""
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        transport = server.transport
        item = Captured(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(raw),
            # Parsed from LF line ends, as a mail store would keep it; CRLF would leak into get_content().
            message=email.message_from_bytes(bytes(raw).replace(b"\r\n", b"\n"), policy=email.policy.default),
            tls=transport is not None and transport.get_extra_info("ssl_object") is not None,
            login=login,
        )
        with self.lock:
            self.captured.append(item)
            number = len(self.captured)
        if self.spool is not None:  # the sandbox keeps what the bot sent where a person can read it
            (self.spool / f"{number:05d}.eml").write_bytes(bytes(raw).replace(b"\r\n", b"\n"))
        with self.lock:
            local = dict(self.local)
        for append in {id(a): a for a in (local.get(_without_detail(r)) for r in item.rcpt_tos) if a}.values():
            append(bytes(raw))
        return f"250 2.0.0 OK queued as {number}"

    def take_drop(self) -> bool:
        with self.lock:
            if self.drops:
                self.drops -= 1
                self.attempts += 1
                return True
            return False

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.credentials is not None
            and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials
        )
        # handled=False: aiosmtpd then sends the 535 itself; with the default the client waits forever.
        return AuthResult(success=ok, auth_data=auth_data if ok else None, handled=False)


def _without_detail(address: str) -> str:
    local, at, domain = address.lower().rpartition("@")
    return f"{local.split('+', 1)[0]}{at}{domain}"


class _SinkSMTP(SMTP):
    async def smtp_DATA(self, arg: str) -> None:
        handler: _Handler = self.event_handler
        # Only after the envelope is complete, so the drop hits exactly the n-th message attempt.
        if self.envelope is not None and self.envelope.rcpt_tos and handler.take_drop():
            assert self.transport is not None
            self.transport.close()
            return
        await super().smtp_DATA(arg)


class _SinkController(Controller):
    def factory(self) -> SMTP:
        with warnings.catch_warnings():
            # AUTH without TLS is deliberate in "none" mode; aiosmtpd warns about it per connection.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return _SinkSMTP(self.handler, **self.SMTP_kwargs)


class SmtpSink:
    """A capturing SMTP server on 127.0.0.1; see the module docstring."""

    def __init__(
        self,
        *,
        security: Security | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        credentials: tuple[str, str] | None = None,
        spool: Path | None = None,
    ) -> None:
        """``security`` defaults to ``"tls"`` when ``tls_cert`` is given, else ``"none"``.

        ``credentials=(user, password)`` turns AUTH on and makes it mandatory before MAIL.
        ``spool``: also write every accepted message there as NNNNN.eml.
        """
        if security is None:
            security = "tls" if tls_cert else "none"
        if security != "none" and not (tls_cert and tls_key):
            raise ValueError(f"security={security!r} needs tls_cert and tls_key")
        self.security: Security = security
        self._handler = _Handler()
        self._handler.credentials = credentials
        if spool is not None:
            spool.mkdir(parents=True, exist_ok=True)
            self._handler.spool = spool
        self._port = free_port()
        kwargs: dict[str, Any] = {
            "hostname": LOOPBACK,
            "port": self._port,
            "server_hostname": "sink.test",
            "ready_timeout": 5.0,
        }
        if security != "none":
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(tls_cert), str(tls_key))
            kwargs["ssl_context" if security == "tls" else "tls_context"] = context
        if credentials is not None:
            # "none" allows AUTH on a bare socket so login paths stay testable without TLS; "tls"
            # must not require it either, as aiosmtpd only counts STARTTLS as TLS for AUTH.
            kwargs.update(
                authenticator=self._handler.authenticate, auth_required=True, auth_require_tls=security == "starttls"
            )
        self._kwargs = kwargs
        self._controller: _SinkController | None = None

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        return self._port

    @property
    def messages(self) -> list[Captured]:
        """A snapshot of the accepted messages, oldest first."""
        with self._handler.lock:
            return list(self._handler.captured)

    @property
    def attempts(self) -> int:
        """DATA commands seen so far, including failed and dropped ones (retries add up here)."""
        with self._handler.lock:
            return self._handler.attempts

    def start(self) -> None:
        """Listen (again, after stop(): same port, captured messages and failures kept)."""
        if self._controller is None:
            # A stopped Controller has closed its event loop and cannot start twice: make a new one.
            controller = _SinkController(self._handler, **self._kwargs)
            controller.start()
            self._controller = controller

    def stop(self) -> None:
        """Stop listening: clients now get "connection refused" (for tests of an unreachable server)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Captured]:
        """Poll until at least ``count`` messages arrived; returns all of them (maybe more than ``count``).

        Raises AssertionError listing what did arrive if the deadline passes.
        """
        deadline = time.monotonic() + timeout
        while True:
            got = self.messages
            if len(got) >= count:
                return got
            if time.monotonic() >= deadline:
                summary = [(c.mail_from, c.rcpt_tos, c.message.get("Subject")) for c in got]
                raise AssertionError(
                    f"SMTP sink expected {count} message(s) within {timeout} s, got {len(got)}: {summary}"
                )
            time.sleep(0.01)

    def clear(self) -> None:
        """Forget captured messages and the attempt count (injected failures stay)."""
        with self._handler.lock:
            self._handler.captured.clear()
            self._handler.attempts = 0

    def reset_failures(self) -> None:
        """Undo fail_next, reject_recipient and drop_connections."""
        with self._handler.lock:
            self._handler.data_replies.clear()
            self._handler.rcpt_replies.clear()
            self._handler.drops = 0

    def fail_next(self, n: int, reply: str = "451 4.3.0 try again later") -> None:
        """The next ``n`` completed DATA transfers get ``reply`` (queued after earlier fail_next calls)."""
        with self._handler.lock:
            self._handler.data_replies.extend([reply] * n)

    def reject_recipient(self, address: str, reply: str = "550 5.1.1 no such user") -> None:
        """RCPT TO for ``address`` (case-insensitive) answers ``reply`` until reset_failures()."""
        with self._handler.lock:
            self._handler.rcpt_replies[address.lower()] = reply

    def deliver_locally(self, address: str, append: Callable[[bytes], object]) -> None:
        """From now on also pass each accepted message for ``address`` or ``local+anything@domain`` to
        ``append`` (e.g. ``MailUser.append``), once per message, as raw bytes."""
        with self._handler.lock:
            self._handler.local[_without_detail(address)] = append

    def drop_connections(self, n: int) -> None:
        """The next ``n`` DATA commands close the connection without any reply."""
        with self._handler.lock:
            self._handler.drops += n
