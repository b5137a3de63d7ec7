"""The loop: drain the mailbox, deliver the outbox, wait for news (IDLE or polling), never die of the network.

This is the one place that catches everything. A message is processed and committed before it is
filed. Three threads share the work: the mail loop (drain, IDLE), the IANA lookups of new requests and the
sender, which delivers the outbox whenever a batch or a lookup queued mail. Neither the lookups nor the SMTP
session hold up the next message: only their commits take the work lock, and only the sender talks SMTP,
so an item is never sent twice at once. A lost connection is retried with exponential backoff and jitter
(tenacity). A refused login is not a network error: the Secretariat is mailed once per outage, an ERROR is
logged, and the login is retried only every AUTH_RETRY_SECONDS. SIGTERM/SIGINT finish the current message,
flush the outbox and return.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import logging
import os
import random
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import tenacity
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from .authenticity import make_dnsfunc
from .bot import Bot
from .compose import Templates
from .config import Config, ConfigError
from .dmarc_policy import build_policies
from .health import HEARTBEAT_KEY
from .lease import Lease, LeaseHeld, instance_id
from .mailbox import Mailbox, MailboxAuthError, MailboxError
from .pipeline import FOLDER_FAILED, Origin, last_resort, process
from .rules import Rules
from .schedule import retry_due_lookups, run_due_jobs
from .settle import settle
from .store import StoreError, iso, utcnow

log = logging.getLogger(__name__)

FINAL_FLUSH_SECONDS = 5.0
# How long stop() lets a delivery finish the mail in flight before it cuts the SMTP session.
STOP_GRACE_SECONDS = 1.0
# A refused login stays refused until someone changes the password: trying often only fills the log and
# may get the account locked, so it is retried this slowly, not at the network backoff.
AUTH_RETRY_SECONDS = 300.0
# Set while the Secretariat has been told that the IMAP login is refused; cleared by the next good login,
# so each outage is reported once, whatever the number of restarts or `run --once` passes.
AUTH_ALERT_KEY = "imap-auth-alerted"


class _HalfJitter(tenacity.wait.wait_base):
    """The inner wait times uniform(0.5, 1): never more than the cap, and bots restarted together drift apart."""

    def __init__(self, inner: tenacity.wait.wait_base):
        self.inner = inner

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return self.inner(retry_state) * random.uniform(0.5, 1.0)


class _StopWhen(tenacity.stop.stop_base):
    """Give up retrying once the daemon is stopping."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.event.is_set()


def _network_error(exc: BaseException) -> bool:
    return isinstance(exc, MailboxError) and not isinstance(exc, MailboxAuthError)


@dataclass
class DrainReport:
    processed: int = 0
    failed: int = 0


class Daemon:
    def __init__(self, bot: Bot, mailbox_factory: Callable[[], Mailbox] | None = None):
        self.bot = bot
        self.mailbox_factory = mailbox_factory or (lambda: Mailbox(bot.config.imap))
        self.stopping = threading.Event()
        self.waiting = threading.Event()  # set while the main thread blocks in IDLE or NOOP polling
        self.tick_seconds = 60
        imap = bot.config.imap
        # The lease runs on wall-clock time (it is about live processes, not the business clock).
        self.lease = Lease(imap, instance_id(bot.store), utcnow) if imap.lease_seconds > 0 else None
        self.leased = False
        self.lost_lease: str | None = None
        # Message processing and scheduled jobs both write the store and queue mail: one at a time.
        self.work = threading.Lock()
        self.mailbox: Mailbox | None = None
        # New requests wait for IANA in their own thread (run()), woken by the drain: never on the mail path.
        self.lookups_due = threading.Event()
        # The outbox is delivered by one sender at a time (an item read as queued is sent by that one only),
        # without the work lock: a slow SMTP server holds up no message. The drain and the lookups wake it.
        self.sending = threading.Lock()
        self.delivery_due = threading.Event()
        self.auth_retry_seconds = AUTH_RETRY_SECONDS
        # SIGHUP: how to read the configuration and rules again (validated, or ConfigError), and the
        # configuration as last read from the file (the sandbox rewrites imap and smtp in bot.config).
        self.loader: Callable[[], tuple[Config, Rules]] | None = None
        self.loaded_config = bot.config

    # --- one pass -------------------------------------------------------------------------------

    def connect(self) -> Mailbox:
        """Log in (taking the mailbox's lease first: LeaseHeld if another bot reads it)."""
        if self.lease is not None and not self.leased:
            self.lease.acquire()
            self.leased = True
        mailbox = self.mailbox_factory()
        mailbox.connect()
        self._check_uidvalidity(mailbox)
        self.mailbox = mailbox
        if self.bot.store.get_meta(AUTH_ALERT_KEY) is not None:
            log.info("IMAP login as %s works again", self.bot.config.imap.username)
            with self.bot.store.transaction():
                self.bot.store.execute("DELETE FROM meta WHERE key = ?", (AUTH_ALERT_KEY,))
        return mailbox

    def login_refused(self, exc: MailboxAuthError) -> None:
        """Log the refused login as an ERROR saying what to check, and mail the Secretariat once per outage
        (SMTP is another server and may well work). Never raises for the mail: the log line is the alert
        of last resort."""
        imap = self.bot.config.imap
        log.error(
            "IMAP login failed: %s; check imap.username and imap.password (or SECIRBOT_IMAP_PASSWORD) and "
            "that the account is not locked; retrying every %d min",
            exc,
            max(1, round(self.auth_retry_seconds / 60)),
        )
        store = self.bot.store
        try:
            with self.work, store.transaction():
                if store.get_meta(AUTH_ALERT_KEY) is not None:
                    return
                store.set_meta(AUTH_ALERT_KEY, iso(self.bot.now()))
                store.audit("imap-login-refused", at=self.bot.now(), host=imap.host, username=imap.username)
                self.bot.outbox.queue_mail(
                    purpose="imap-auth-failed",
                    template="imap_auth_failed.txt",
                    context={
                        "bot": self.bot.config.addresses.bot,
                        "secretariat": self.bot.config.addresses.secretariat,
                        "list_address": self.bot.config.mailman.list,
                        "host": imap.host,
                        "port": imap.port,
                        "username": imap.username,
                        "problem": str(exc),
                        "retry_minutes": max(1, round(self.auth_retry_seconds / 60)),
                    },
                    to=[self.bot.config.addresses.secretariat],
                )
            self.deliver()
        except Exception:  # the alert must not turn a refused login into a crash
            log.exception("could not queue the mail about the refused IMAP login")

    def _sleep(self, seconds: float) -> None:
        self.stopping.wait(seconds)  # the backoff's sleep: stop() ends it at once

    def release(self) -> None:
        if self.lease is not None and self.leased:
            self.lease.release()
            self.leased = False

    def _check_uidvalidity(self, mailbox: Mailbox) -> None:
        store, folder, now = self.bot.store, self.bot.config.imap.folder, self.bot.now()
        row = store.one("SELECT uidvalidity FROM folder_state WHERE folder = ?", (folder,))
        if row is not None and row["uidvalidity"] == mailbox.uidvalidity:
            return
        with store.transaction():
            if row is not None:
                # Every stored UID of this folder now names nothing; duplicates are caught by Message-ID
                # and body instead, so a re-numbered message is filed, not processed twice.
                log.warning("UIDVALIDITY of %s changed from %s to %s", folder, row["uidvalidity"], mailbox.uidvalidity)
                store.audit(
                    "uidvalidity-changed", at=now, folder=folder, old=row["uidvalidity"], new=mailbox.uidvalidity
                )
            store.execute(
                "INSERT INTO folder_state (folder, uidvalidity, checked_at) VALUES (?, ?, ?)"
                " ON CONFLICT (folder) DO UPDATE SET uidvalidity = excluded.uidvalidity,"
                " checked_at = excluded.checked_at",
                (folder, mailbox.uidvalidity, iso(now)),
            )

    def drain(self, mailbox: Mailbox) -> DrainReport:
        """Process every message waiting in the folder; file each batch after its commits."""
        report = DrainReport()
        folder = self.bot.config.imap.folder
        uids = mailbox.pending()
        batch_size = max(1, self.bot.config.imap.batch_size)
        for start in range(0, len(uids), batch_size):
            if self.stopping.is_set():
                break
            filed: dict[str, list[int]] = {"processed": [], "failed": []}
            for fetched in mailbox.fetch(uids[start : start + batch_size]):
                origin = Origin(folder, mailbox.uidvalidity, fetched.uid)
                with self.work:
                    try:
                        where = process(self.bot, origin, fetched.raw, fetched.headers_only)
                    except (sqlite3.Error, StoreError):
                        raise  # the store cannot record anything: stop, the message stays in the inbox
                    except Exception as exc:
                        where = last_resort(self.bot, origin, fetched.raw, exc)
                filed[where].append(fetched.uid)
                report.failed += where == FOLDER_FAILED
                report.processed += 1
                if self.stopping.is_set():
                    break
            for where, done in filed.items():
                mailbox.file(done, where)
            self.lookups_due.set()
            self.delivery_due.set()
        return report

    def deliver(self, final: bool = False) -> None:
        """Send what is due. While stopping only the final flush sends, and only for FINAL_FLUSH_SECONDS."""
        if final:
            deadline = time.monotonic() + FINAL_FLUSH_SECONDS
            stop, timeout = (lambda: time.monotonic() > deadline), FINAL_FLUSH_SECONDS
        else:
            stop, timeout = self.stopping.is_set, None
        if not self.sending.acquire(timeout=-1 if timeout is None else timeout):
            log.warning("outbox: the sender is still busy; what is queued stays queued")
            return
        try:
            report = self.bot.outbox.deliver(stop=stop, timeout=timeout)
        finally:
            self.sending.release()
        with self.work:
            settle(self.bot)  # what the deliveries answered (and any answer a crash left unsettled)
        if report.sent or report.deferred or report.failed:
            log.info("outbox: %d sent, %d deferred, %d failed", report.sent, report.deferred, report.failed)

    def run_once(self, max_attempts: int = 5) -> DrainReport:
        """Process everything waiting, deliver the outbox, beat the heart, and return (`secirbot run --once`).

        A connection lost midway (the server restarted) is reconnected with backoff; what was committed
        before is filed on the next pass, never processed again. Raises MailboxError after max_attempts
        (and then writes no heartbeat: the pass did not happen); MailboxAuthError at once, after
        login_refused() told the Secretariat. The heartbeat lets `check --health` tell a
        bot run from cron that works from one that never ran.
        """
        total = DrainReport()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_network_error),
            wait=_HalfJitter(tenacity.wait_exponential(multiplier=1, max=30)),
            stop=tenacity.stop_any(tenacity.stop_after_attempt(max_attempts), _StopWhen(self.stopping)),
            sleep=self._sleep,
            before_sleep=_log_reconnect,
            reraise=True,
        )
        drained = threading.Event()
        # The lookups wait for the end of the pass, as they always have in `--once`: what a message finds
        # (a request still resolving, an approver already known) must not depend on how fast IANA answers.
        helpers = self._start_helpers(until=drained, lookups=False)
        try:
            for attempt in retrying:
                with attempt:
                    mailbox = self.connect()
                    try:
                        report = self.drain(mailbox)
                    finally:
                        mailbox.close()
                        self.mailbox = None
                    total.processed += report.processed
                    total.failed += report.failed
            self.run_due()  # the sender goes on with what the drain queued and sends what the lookups queue
        except MailboxAuthError as exc:
            self.login_refused(exc)
            raise
        finally:
            self._join_helpers(helpers, drained)
        self.deliver()
        self.heartbeat()
        self.release()
        return total

    def run_due(self, lookups: bool = True) -> None:
        """Scheduled work that is due now (reminders, expiry, retries); see schedule.py. IANA lookups run
        outside the work lock: only their commits take it."""
        with self.work:
            run_due_jobs(self.bot, lookups=False)
        if lookups:
            self.look_up()

    def look_up(self) -> None:
        """The IANA lookups that are due (new requests as soon as the drain filed them, retries every tick);
        what they queue goes to the sender."""
        retry_due_lookups(self.bot, guard=lambda: self.work, stop=self.stopping.is_set, committed=self.delivery_due.set)

    def _start_helpers(self, until: threading.Event, lookups: bool = True) -> list[threading.Thread]:
        """The sender thread and (`lookups`) the lookup thread, each woken by its event (and every tick) until
        `until` or stop()."""

        def loop(due: threading.Event, job: Callable[[], None], what: str) -> None:
            while not (until.is_set() or self.stopping.is_set()):
                due.wait(self.tick_seconds)
                due.clear()
                if until.is_set() or self.stopping.is_set():
                    break
                try:
                    job()
                except Exception:  # a failing pass must not end the thread; the next one retries
                    log.exception("%s failed", what)

        jobs: list[tuple[threading.Event, Callable[[], None], str, str]] = [
            (self.delivery_due, self.deliver, "delivery", "sender")
        ]
        if lookups:
            jobs.append((self.lookups_due, self.look_up, "IANA lookups", "iana-lookups"))
        threads = [threading.Thread(target=loop, args=(due, job, what), name=name) for due, job, what, name in jobs]
        for thread in threads:
            thread.daemon = True
            thread.start()
        return threads

    def _join_helpers(self, threads: list[threading.Thread], until: threading.Event) -> None:
        """End the helper threads: each finishes the pass it is in (a lookup waits at most its timeouts)."""
        until.set()
        self.lookups_due.set()
        self.delivery_due.set()
        for thread in threads:
            thread.join(timeout=2 * self.bot.config.iana.timeout_seconds + self.bot.config.smtp.timeout_seconds + 5)

    # --- forever --------------------------------------------------------------------------------

    def run(self) -> None:
        """Until stop(): drain, then wait for news (IDLE, else polling); reconnect with backoff on any
        mailbox error. Scheduled work runs in APScheduler's thread, one job at a time with the mail."""
        scheduler = self.start_scheduler()
        ended = threading.Event()
        helpers = self._start_helpers(until=ended)
        try:
            while not self.stopping.is_set():
                retrying = tenacity.Retrying(
                    retry=tenacity.retry_if_exception(_network_error),
                    wait=_HalfJitter(tenacity.wait_exponential(multiplier=2, max=256)),
                    stop=_StopWhen(self.stopping),
                    sleep=self._sleep,
                    before_sleep=_log_reconnect,
                    reraise=True,
                )
                try:
                    for attempt in retrying:
                        with attempt:
                            self.session(attempt.retry_state)
                except MailboxAuthError as exc:
                    self.login_refused(exc)
                    self.stopping.wait(self.auth_retry_seconds)
                except MailboxError:
                    if not self.stopping.is_set():
                        raise
        finally:
            scheduler.shutdown(wait=True)  # lets a running job finish
            self._join_helpers(helpers, ended)
            if self.bot.outbox.smtp_down_since is None:
                # Flush what is queued, but never wait long on the way out: a container stop is ~10 s.
                self.deliver(final=True)
            if self.lost_lease is None:
                self.release()
            log.info("stopped")
        if self.lost_lease is not None:
            raise LeaseHeld(self.lost_lease)

    def session(self, retry_state: tenacity.RetryCallState) -> None:
        """One IMAP session: log in, drain, then wait for news and drain until stop(). A MailboxError
        ends it (run() reconnects); one raised because stop() cut the connection ends it quietly."""
        try:
            mailbox = self.connect()
            # A good login starts the backoff afresh: the next drop waits seconds, not minutes.
            retry_state.attempt_number = 1
            log.info(
                "connected to %s:%s, folder %s (%s)",
                self.bot.config.imap.host,
                self.bot.config.imap.port,
                self.bot.config.imap.folder,
                "IDLE" if mailbox.can_idle else "polling",
            )
            self.drain(mailbox)
            while not self.stopping.is_set():
                self.heartbeat()
                timeout = (
                    self.bot.config.imap.idle_renew_seconds if mailbox.can_idle else self.bot.config.imap.poll_seconds
                )
                self.waiting.set()
                try:
                    if self.stopping.is_set():
                        break
                    mailbox.wait_for_news(timeout)
                finally:
                    self.waiting.clear()
                self.drain(mailbox)
        except MailboxError:
            if self.stopping.is_set():
                return  # stop() itself cut the connection to end the wait: nothing went wrong
            raise
        finally:
            if self.mailbox is not None:
                self.mailbox.close()
                self.mailbox = None

    def start_scheduler(self) -> BackgroundScheduler:
        """The periodic tick. Its only job reads what is due from the store, so a restart never
        duplicates work, and work that fell due while the bot was down runs at once, once."""
        scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        scheduler.add_job(
            self.tick,
            IntervalTrigger(seconds=self.tick_seconds, timezone=UTC),
            id="tick",
            replace_existing=True,
            next_run_time=datetime.now(UTC),
        )
        scheduler.start()
        return scheduler

    def tick(self) -> None:
        """Due work and outbox retries; never raises (a failing job must not stop the schedule)."""
        try:
            self.run_due(lookups=False)  # the lookup thread does those
            self.deliver()
            if self.mailbox is not None:  # no heartbeat while the mailbox is out of reach: unhealthy
                self.renew_lease()
                self.heartbeat()
        except Exception:  # the daemon's last line of defence: log it and try again next tick
            log.exception("scheduled work failed; will try again at the next tick")

    def renew_lease(self) -> None:
        if self.lease is None or not self.leased:
            return
        try:
            self.lease.renew()
        except LeaseHeld as exc:  # someone took the mailbox while we could not renew: give way
            log.error("lost the mailbox: %s; stopping", exc)
            self.lost_lease = str(exc)
            self.stop()
        except MailboxError as exc:
            log.warning("could not renew the mailbox lease: %s", exc)

    def heartbeat(self) -> None:
        with self.work, self.bot.store.transaction():
            self.bot.store.set_meta(HEARTBEAT_KEY, iso(self.bot.now()))

    def stop(self) -> None:
        """Ask the loop to end: the current message is finished, the outbox flushed. Safe from a signal
        handler and from another thread."""
        self.stopping.set()
        self.lookups_due.set()
        mailbox = self.mailbox
        if self.waiting.is_set() and mailbox is not None:
            # The loop sits in IDLE's select() for up to idle_renew_seconds: shutting the socket down
            # ends the wait at once (idle_check sees EOF), and the loop sees `stopping`.
            mailbox.interrupt()
        session = self.bot.outbox.session_in_use()
        if session is not None:
            # A server that answers ends the mail in flight within milliseconds, and the sender then sees
            # `stopping`. Cutting it at once made that mail a deferral, retried only minutes later instead of
            # in the final flush. Only a session still in use after the grace is cut (the mail stays queued).
            cut = threading.Timer(STOP_GRACE_SECONDS, self.bot.outbox.interrupt, kwargs={"only": session})
            cut.daemon = True
            cut.start()

    def signal_handler(self, signum: int, frame: object) -> None:
        log.info("signal %s: stopping after the current message", signum)
        self.stop()

    def reload_handler(self, signum: int, frame: object) -> None:
        """SIGHUP: reload in a thread of its own. The handler runs on the main thread, which may hold the
        work lock in the middle of a message; taking it here would deadlock."""
        threading.Thread(target=self.reload, name="reload", daemon=True).start()

    def reload(self) -> bool:
        """Read rules.yaml, the templates and the configuration again and use them from the next message on.
        Everything is validated first: an invalid file keeps what runs and logs why in one line. Connection
        keys (imap, smtp, store) are kept as they are: a change there is logged as needing a restart."""
        if self.loader is None:
            log.warning("reload: not supported here; restart the bot")
            return False
        try:
            config, rules = self.loader()
        except ConfigError as exc:
            log.error("reload refused, still running with the previous configuration: %s", "; ".join(exc.problems))
            return False
        except Exception as exc:  # whatever the files hold, a reload must not end the daemon
            log.error("reload refused, still running with the previous configuration: %s", exc)
            return False
        old = self.loaded_config
        changed = [name for name in ("imap", "smtp", "store") if getattr(config, name) != getattr(old, name)]
        if changed:
            log.warning("reload: %s changed; restart the bot for that to take effect", ", ".join(changed))
        running = self.bot.config
        config_now = dataclasses.replace(config, imap=running.imap, smtp=running.smtp, store=running.store)
        templates = Templates(config_now.templates)
        with self.work:
            bot = self.bot
            bot.config, bot.rules, bot.templates = config_now, rules, templates
            bot.outbox.config, bot.outbox.rules, bot.outbox.templates = config_now, rules.outbox, templates
            bot.dnsfunc = make_dnsfunc(config_now.dns) if rules.authentication.require != "none" else None
            bot.dmarc = build_policies(config_now, rules, bot.now)
            self.loaded_config = dataclasses.replace(config, imap=old.imap, smtp=old.smtp, store=old.store)
        log.info("reloaded %s, %s and %s", config.source or "embedded defaults", config.rules, config.templates)
        return True


def _log_reconnect(retry_state: tenacity.RetryCallState) -> None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    delay = retry_state.next_action.sleep if retry_state.next_action else 0.0
    log.warning("mailbox: %s; reconnecting in %.1f s", exc, delay)


class InstanceLocked(Exception):
    """Another secirbot already runs on this store or mailbox."""


class InstanceLock:
    """One running bot per store and per mailbox: an exclusive flock on a lock file for each.

    The store's lock sits beside the database; the mailbox's lock is named after host, port, user and
    folder in the temp directory, so two configurations pointing at one mailbox also collide.
    """

    def __init__(self, handles: list[tuple[Path, int]]):
        self.handles = handles

    @classmethod
    def acquire(cls, config: Config) -> InstanceLock:
        imap = config.imap
        identity = f"{imap.host}:{imap.port}:{imap.username}:{imap.folder}"
        paths = [config.store.path.with_name(config.store.path.name + ".lock")]
        if imap.host:
            digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
            paths.append(Path(tempfile.gettempdir()) / f"secirbot-mailbox-{digest}.lock")
        handles: list[tuple[Path, int]] = []
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                for _, held in handles:
                    os.close(held)
                what = "store" if path == paths[0] else f"mailbox {imap.username}@{imap.host}:{imap.port}/{imap.folder}"
                raise InstanceLocked(
                    f"another secirbot (pid {holder}) is already running on this {what} "
                    f"(lock {path}); refusing to start a second one"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            handles.append((path, fd))
        return cls(handles)

    def release(self) -> None:
        for _, fd in self.handles:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self.handles = []
