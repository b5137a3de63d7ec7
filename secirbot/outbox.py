"""The outbox: mail (and Mailman REST calls) queued in the same transaction as the change that causes
them, delivered after the commit, retried with backoff, never composed twice.

What a delivery answered that matters beyond the outbox (a recipient refused for good, Mailman's answer to a
REST call) is written as a `delivery_events` row in the transaction that records the attempt. The outbox
never acts on it: `settle` feeds those events to the stages that own their consequences, after delivery.

A queued row holds the finished message bytes with its Message-ID; delivery only ever sends those bytes.
SMTP cannot close the window between the server's 250 and our commit of "sent": after a crash in that
window the very same message goes out once more (same Message-ID), and the window is one message wide.
Whether the last SMTP connection attempt succeeded is kept in the store (`health.record_delivery`), for
`check --health` and the exit status of `run --once`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import smtplib
import socket
import sqlite3
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from typing import Any, Literal

from .compose import ENGLISH, Language, Templates, as_bytes, compose
from .config import Config, SmtpConfig
from .health import record_delivery
from .mailman_rest import Answer, MailmanRest, RestUnavailable
from .rules import OutboxRules
from .store import Store, from_iso, iso, rowid
from .tls import tls_context

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    """What one delivery attempt achieved, per recipient."""

    delivered: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # 4xx or connection trouble: try again later
    failed: list[str] = field(default_factory=list)  # 5xx: never try again
    error: str = ""
    answer: Answer | None = None  # a Mailman REST call: what Mailman said (none when it could not be reached)


@dataclass(frozen=True)
class DeliveryEvent:
    """What one delivery attempt answered, for the stage that owns its consequences (secirbot/settle.py).

    `failed`: `details` has `to` (the recipients refused for good) and `error`. `mailman-answered`: `details`
    has `http` (None: never reached), `said`, `error` and `gave_up`; `call` is the REST call queued."""

    id: int
    kind: Literal["failed", "mailman-answered"]
    at: str
    details: Mapping[str, Any]
    outbox_id: int
    purpose: str
    request_id: int | None
    message_id: str
    call: Mapping[str, Any] | None


@dataclass
class DeliveryReport:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    smtp_unreachable: bool = False  # the last connection attempt of this delivery failed


class SmtpError(Exception):
    """The SMTP server could not be reached or logged in to."""


def open_smtp(
    config: SmtpConfig, on_session: Callable[[smtplib.SMTP], None] | None = None, timeout: float | None = None
) -> smtplib.SMTP:
    """A connected, logged-in SMTP session as the config says. Raises SmtpError. `on_session` sees the
    session before it connects, so that another thread can interrupt a server that never answers."""
    context = tls_context(str(config.ca_file) if config.ca_file else None, config.tls_verify)
    wait = timeout if timeout is not None else config.timeout_seconds
    try:
        if config.security == "tls":
            session: smtplib.SMTP = smtplib.SMTP_SSL(timeout=wait, context=context)
        else:
            session = smtplib.SMTP(timeout=wait)
        # smtplib names the TLS server (SNI, hostname check) from _host, which only __init__ sets; we connect
        # separately so that the session is known to on_session before a silent server can block us.
        session._host = config.host or ""  # type: ignore[attr-defined]
        if on_session is not None:
            on_session(session)
        session.connect(config.host or "", config.port)
        if config.security == "starttls":
            session.starttls(context=context)
        if config.username:
            session.login(config.username, config.password or "")
        return session
    except smtplib.SMTPAuthenticationError as exc:
        raise SmtpError(
            f"SMTP login as {config.username!r} on {config.host}:{config.port} was refused: "
            f"{exc.smtp_code} {_decode(exc.smtp_error)}"
        ) from exc
    except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
        raise SmtpError(f"SMTP {config.host}:{config.port}: {exc or type(exc).__name__}") from exc


class Outbox:
    def __init__(
        self,
        store: Store,
        templates: Templates,
        config: Config,
        rules: OutboxRules,
        now: Callable[[], datetime],
        rest: MailmanRest | None = None,
    ):
        self.store = store
        self.templates = templates
        self.config = config
        self.rules = rules
        self.now = now
        self.rest = rest  # the Mailman REST client that `mailman-rest` items are delivered with
        self._session: smtplib.SMTP | None = None
        self.smtp_down_since: datetime | None = None  # set while the SMTP server cannot be reached

    # --- queueing (inside the caller's transaction) -----------------------------------------------

    def queue_mail(
        self,
        *,
        purpose: str,
        template: str,
        context: Mapping[str, Any],
        to: Sequence[str],
        cc: Sequence[str] = (),
        reply_to: str | None = None,
        in_reply_to: str | None = None,
        request_id: int | None = None,
        cause_message: int | None = None,
        auto: Literal["auto-generated", "auto-replied"] = "auto-generated",
        sender: str | None = None,
        language: Language = ENGLISH,
    ) -> int:
        """Render (in `language`), compose (Message-ID fixed now) and queue one message. Returns the outbox id."""
        when = self.now()
        msg = compose(
            self.templates.render(template, context, language),
            sender=sender or self.config.addresses.bot,
            sender_name=self.config.addresses.bot_name,
            to=to,
            cc=cc,
            reply_to=reply_to,
            in_reply_to=in_reply_to,
            when=when,
            auto=auto,
        )
        return self.queue_message(
            msg, purpose=purpose, recipients=[*to, *cc], request_id=request_id, cause_message=cause_message
        )

    def queue_message(
        self,
        msg: Message,
        *,
        purpose: str,
        recipients: Sequence[str],
        request_id: int | None = None,
        cause_message: int | None = None,
        envelope_from: str | None = None,
    ) -> int:
        when = self.now()
        cur = self.store.execute(
            "INSERT INTO outbox (message_id, kind, purpose, request_id, cause_message, to_key, envelope_from,"
            " recipients, payload, state, next_attempt_at, created_at)"
            " VALUES (?, 'mail', ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
            (
                msg["Message-ID"],
                purpose,
                request_id,
                cause_message,
                recipients[0].lower(),
                envelope_from or self.config.addresses.bot,
                json.dumps(list(recipients)),
                as_bytes(msg),
                iso(when),
                iso(when),
            ),
        )
        outbox_id = rowid(cur)
        self.store.audit(
            "mail-queued",
            at=when,
            request_id=request_id,
            message_row=cause_message,
            outbox_id=outbox_id,
            purpose=purpose,
            to=list(recipients),
            message_id=msg["Message-ID"],
        )
        return outbox_id

    def queue_rest(
        self, *, purpose: str, call: Mapping[str, Any], request_id: int | None, cause_message: int | None = None
    ) -> int:
        """Queue a Mailman REST call; `call` is plain JSON (never the password)."""
        when = self.now()
        message_id = f"<rest-{request_id}-{purpose}-{iso(when)}-{id(call)}@secirbot>"
        cur = self.store.execute(
            "INSERT INTO outbox (message_id, kind, purpose, request_id, cause_message, to_key, envelope_from,"
            " recipients, payload, state, next_attempt_at, created_at)"
            " VALUES (?, 'mailman-rest', ?, ?, ?, ?, '', ?, ?, 'queued', ?, ?)",
            (
                message_id,
                purpose,
                request_id,
                cause_message,
                self.config.mailman.list.lower(),
                json.dumps([self.config.mailman.list]),
                json.dumps(dict(call)).encode(),
                iso(when),
                iso(when),
            ),
        )
        outbox_id = rowid(cur)
        self.store.audit(
            "rest-queued", at=when, request_id=request_id, outbox_id=outbox_id, purpose=purpose, call=dict(call)
        )
        return outbox_id

    def recent(self, to_key: str, purposes: Sequence[str], since: datetime) -> int:
        """How many mails of these purposes went to this address since then (for once-a-day limits)."""
        marks = ",".join("?" * len(purposes))
        row = self.store.one(
            f"SELECT COUNT(*) AS n FROM outbox WHERE to_key = ? AND purpose IN ({marks}) AND created_at >= ?",
            (to_key.lower(), *purposes, iso(since)),
        )
        return int(row["n"]) if row else 0

    # --- delivery (after the commit) --------------------------------------------------------------

    def pending_count(self) -> int:
        row = self.store.one("SELECT COUNT(*) AS n FROM outbox WHERE state = 'queued'")
        return int(row["n"]) if row else 0

    def next_due(self) -> datetime | None:
        row = self.store.one("SELECT MIN(next_attempt_at) AS t FROM outbox WHERE state = 'queued'")
        return from_iso(row["t"]) if row and row["t"] else None

    def session_in_use(self) -> smtplib.SMTP | None:
        """The SMTP session a delivery is using now, if any (for `interrupt(only=...)`)."""
        return self._session

    def interrupt(self, only: smtplib.SMTP | None = None) -> None:
        """End a delivery that waits on a silent SMTP server (from another thread or a signal handler).
        `only`: cut that session only, and only if a delivery is still using it."""
        session = self._session
        if only is not None and session is not only:
            return
        sock = getattr(session, "sock", None) if session is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _track(self, session: smtplib.SMTP) -> None:
        self._session = session

    def deliver(
        self,
        connect: Callable[[], smtplib.SMTP] | None = None,
        stop: Callable[[], bool] = lambda: False,
        timeout: float | None = None,
    ) -> DeliveryReport:
        """Send every due item once. One SMTP session for all of them, opened only if there is mail."""
        connect = connect or (lambda: open_smtp(self.config.smtp, on_session=self._track, timeout=timeout))
        report = DeliveryReport()
        rows = self.store.all(
            "SELECT * FROM outbox WHERE state = 'queued' AND next_attempt_at <= ? ORDER BY id", (iso(self.now()),)
        )
        session: smtplib.SMTP | None = None
        smtp_down = ""
        connected: bool | None = None  # None: no connection was tried (no mail was due)
        try:
            for row in rows:
                if stop():
                    break
                recipients = json.loads(row["recipients"])
                if row["kind"] == "mailman-rest":
                    attempt = self._call_mailman(row, recipients)
                elif smtp_down:
                    attempt = Attempt(deferred=recipients, error=smtp_down)
                else:
                    if session is None:
                        try:
                            session = connect()
                            self.smtp_down_since = None
                            connected = True
                        except SmtpError as exc:
                            smtp_down = str(exc)
                            self.smtp_down_since = self.smtp_down_since or self.now()
                            connected = False
                            log.warning("outbox: %s", smtp_down)
                            self._record(row, Attempt(deferred=recipients, error=smtp_down), report)
                            continue
                    attempt = _send(session, row["envelope_from"], recipients, row["payload"])
                    if attempt.deferred and not attempt.delivered and not attempt.failed:
                        # The session may be broken (disconnect, timeout): start afresh for the next one.
                        _quit(session)
                        session = None
                self._record(row, attempt, report)
        finally:
            _quit(session)
            self._session = None
        if connected is not None:
            # For `check --health` and the exit status of `run --once`, in other processes too: the last
            # attempt's outcome, kept in the store (an outage keeps the moment it began).
            record_delivery(self.store, self.now(), None if connected else smtp_down)
        report.smtp_unreachable = connected is False
        return report

    def _call_mailman(self, row: sqlite3.Row, recipients: list[str]) -> Attempt:
        """One queued REST call. Unreachable (or 5xx) is a deferral; an answer that settles it is a delivery,
        any other answer a failure. What Mailman said goes with the Attempt, for `settle`."""
        if self.rest is None:
            return Attempt(deferred=recipients, error="no Mailman REST client configured")
        call = json.loads(row["payload"])
        removal = call.get("action") == "remove"
        try:
            if removal:
                answer = self.rest.remove_member(call["list_id"], call["address"])
            else:
                answer = self.rest.add_member(call["list_id"], call["address"], call.get("display_name", ""))
        except (RestUnavailable, ValueError) as exc:
            return Attempt(deferred=recipients, error=str(exc))
        # members.py: a removal is done (204), waits for a person (202) or had nothing to do (404); an
        # addition is done (201), waits for a confirmation (202) or met an existing member (409).
        if answer.status in ((202, 204, 404) if removal else (201, 202, 409)):
            return Attempt(delivered=recipients, answer=answer)
        what = f" to removing {call['address']}" if removal else ""
        error = f"Mailman REST answered HTTP {answer.status}{what}: {str(answer.body)[:300]}"
        return Attempt(failed=recipients, error=error, answer=answer)

    def _event(self, row: sqlite3.Row, kind: str, now: datetime, **details: Any) -> None:
        self.store.execute(
            "INSERT INTO delivery_events (outbox_id, at, kind, details) VALUES (?, ?, ?, ?)",
            (row["id"], iso(now), kind, json.dumps(details, ensure_ascii=False, sort_keys=True)),
        )

    def unsettled(self) -> list[DeliveryEvent]:
        """The delivery events whose consequences are not written yet, oldest first."""
        rows = self.store.all(
            "SELECT e.id, e.kind, e.at, e.details, e.outbox_id, o.purpose, o.request_id, o.message_id, o.kind AS"
            " item, o.payload FROM delivery_events e JOIN outbox o ON o.id = e.outbox_id"
            " WHERE e.settled_at IS NULL ORDER BY e.id"
        )
        return [
            DeliveryEvent(
                id=r["id"],
                kind=r["kind"],
                at=r["at"],
                details=json.loads(r["details"]),
                outbox_id=r["outbox_id"],
                purpose=r["purpose"],
                request_id=r["request_id"],
                message_id=r["message_id"],
                call=json.loads(r["payload"]) if r["item"] == "mailman-rest" else None,
            )
            for r in rows
        ]

    def settled(self, event: DeliveryEvent) -> None:
        """Mark an event's consequences written (inside the transaction that writes them)."""
        self.store.execute("UPDATE delivery_events SET settled_at = ? WHERE id = ?", (iso(self.now()), event.id))

    def _record(self, row: sqlite3.Row, attempt: Attempt, report: DeliveryReport) -> None:
        now = self.now()
        with self.store.transaction():
            delivered = json.loads(row["delivered"]) + attempt.delivered
            newly_failed = list(attempt.failed)
            pending = list(attempt.deferred)
            attempts = row["attempts"] + 1
            error = attempt.error or row["last_error"] or ""
            gave_up = bool(pending) and now - from_iso(row["created_at"]) >= self.rules.give_up_after
            if gave_up:
                newly_failed += pending
                pending = []
                error = f"gave up after {attempts} attempts: {attempt.error}"
            failed = json.loads(row["failed"]) + newly_failed
            if pending:
                state = "queued"
                next_at = now + min(self.rules.retry_first * (2 ** (attempts - 1)), self.rules.retry_max)
            else:
                state = "sent" if delivered else "failed"
                next_at = now
            self.store.execute(
                "UPDATE outbox SET recipients = ?, delivered = ?, failed = ?, state = ?, attempts = ?,"
                " next_attempt_at = ?, last_error = ?, sent_at = COALESCE(sent_at, ?) WHERE id = ?",
                (
                    json.dumps(pending),
                    json.dumps(delivered),
                    json.dumps(failed),
                    state,
                    attempts,
                    iso(next_at),
                    error,
                    iso(now) if attempt.delivered else None,
                    row["id"],
                ),
            )
            if attempt.delivered:
                self.store.audit(
                    "mail-sent" if row["kind"] == "mail" else "rest-done",
                    at=now,
                    request_id=row["request_id"],
                    outbox_id=row["id"],
                    to=attempt.delivered,
                )
            if pending:
                self.store.audit(
                    "delivery-deferred",
                    at=now,
                    request_id=row["request_id"],
                    outbox_id=row["id"],
                    to=pending,
                    error=attempt.error,
                    next_attempt_at=iso(next_at),
                )
            if row["kind"] == "mailman-rest" and (attempt.answer is not None or gave_up):
                answer = attempt.answer
                self._event(
                    row,
                    "mailman-answered",
                    now,
                    http=answer.status if answer else None,
                    said=str(answer.body)[:300] if answer else "",
                    error=attempt.error,
                    gave_up=gave_up,
                )
            if newly_failed:
                self.store.audit(
                    "delivery-failed",
                    at=now,
                    request_id=row["request_id"],
                    outbox_id=row["id"],
                    to=newly_failed,
                    error=error,
                )
                self._event(row, "failed", now, to=newly_failed, error=error)
        if state == "sent":
            report.sent += 1
        if pending:
            report.deferred += 1
        if newly_failed:
            report.failed += 1


def _send(session: smtplib.SMTP, envelope_from: str, recipients: list[str], payload: bytes) -> Attempt:
    """One SMTP transaction; classify each recipient as delivered, deferred (4xx) or failed (5xx)."""
    try:
        refused = session.sendmail(envelope_from, recipients, payload)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = exc.recipients
        if not refused:
            return Attempt(deferred=list(recipients), error="all recipients refused")
    except smtplib.SMTPSenderRefused as exc:
        return _by_code(exc.smtp_code, recipients, f"sender refused: {exc.smtp_code} {_decode(exc.smtp_error)}")
    except smtplib.SMTPResponseException as exc:
        return _by_code(exc.smtp_code, recipients, f"{exc.smtp_code} {_decode(exc.smtp_error)}")
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        return Attempt(deferred=list(recipients), error=f"connection error: {exc or type(exc).__name__}")
    attempt = Attempt(delivered=[r for r in recipients if r not in refused])
    errors = []
    for recipient, (code, message) in refused.items():
        (attempt.failed if 500 <= code < 600 else attempt.deferred).append(recipient)
        errors.append(f"{recipient}: {code} {_decode(message)}")
    attempt.error = "; ".join(errors)
    return attempt


def _by_code(code: int, recipients: list[str], error: str) -> Attempt:
    if 500 <= code < 600:
        return Attempt(failed=list(recipients), error=error)
    return Attempt(deferred=list(recipients), error=error)


def _quit(session: smtplib.SMTP | None) -> None:
    if session is None:
        return
    try:
        session.quit()
    except (smtplib.SMTPException, OSError):
        session.close()


def _decode(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
