"""The loop: drain the mailbox, deliver the outbox, wait for news (IDLE or polling), never die of the network.

This is the one place that catches everything. A message is processed and committed before it is
filed; the outbox is delivered after every batch, so a request is answered as soon as it is read. A
lost connection is retried with exponential backoff and jitter. SIGTERM/SIGINT finish the current
message, flush the outbox and return.
"""

from __future__ import annotations

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

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from .bot import Bot
from .config import Config
from .health import HEARTBEAT_KEY
from .lease import Lease, LeaseHeld, instance_id
from .mailbox import Mailbox, MailboxError
from .pipeline import FOLDER_FAILED, Origin, last_resort, process
from .schedule import retry_due_lookups, run_due_jobs
from .store import StoreError, iso, utcnow

log = logging.getLogger(__name__)

FINAL_FLUSH_SECONDS = 5.0


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
        return mailbox

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
            self.deliver()
        return report

    def deliver(self, final: bool = False) -> None:
        """Send what is due. While stopping only the final flush sends, and only for FINAL_FLUSH_SECONDS."""
        if final:
            deadline = time.monotonic() + FINAL_FLUSH_SECONDS
            stop, timeout = (lambda: time.monotonic() > deadline), FINAL_FLUSH_SECONDS
        else:
            stop, timeout = self.stopping.is_set, None
        with self.work:
            report = self.bot.outbox.deliver(stop=stop, timeout=timeout)
        if report.sent or report.deferred or report.failed:
            log.info("outbox: %d sent, %d deferred, %d failed", report.sent, report.deferred, report.failed)

    def run_once(self, max_attempts: int = 5) -> DrainReport:
        """Process everything waiting, deliver the outbox, beat the heart, and return (`secirbot run --once`).

        A connection lost midway (the server restarted) is reconnected with backoff; what was committed
        before is filed on the next pass, never processed again. Raises MailboxError after max_attempts
        (and then writes no heartbeat: the pass did not happen). The heartbeat lets `check --health` tell a
        bot run from cron that works from one that never ran.
        """
        total = DrainReport()
        failures = 0
        while True:
            try:
                mailbox = self.connect()
                try:
                    report = self.drain(mailbox)
                finally:
                    mailbox.close()
                    self.mailbox = None
                total.processed += report.processed
                total.failed += report.failed
                break
            except MailboxError as exc:
                failures += 1
                if failures >= max_attempts or self.stopping.is_set():
                    raise
                delay = min(30.0, 0.5 * 2**failures) * random.uniform(0.5, 1.0)
                log.warning("mailbox: %s; reconnecting in %.1f s", exc, delay)
                self.stopping.wait(delay)
        self.run_due()
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
            retry_due_lookups(self.bot, guard=lambda: self.work, stop=self.stopping.is_set)

    def lookup_worker(self) -> None:
        """The daemon's IANA lookups: new requests as soon as the drain filed them, retries every tick."""
        while not self.stopping.is_set():
            self.lookups_due.wait(self.tick_seconds)
            self.lookups_due.clear()
            if self.stopping.is_set():
                break
            try:
                if retry_due_lookups(self.bot, guard=lambda: self.work, stop=self.stopping.is_set):
                    self.deliver()
            except Exception:  # a failing lookup pass must not end the thread; the next one retries
                log.exception("IANA lookups failed")

    # --- forever --------------------------------------------------------------------------------

    def run(self) -> None:
        """Until stop(): drain, then wait for news (IDLE, else polling); reconnect with backoff on any
        mailbox error. Scheduled work runs in APScheduler's thread, one job at a time with the mail."""
        scheduler = self.start_scheduler()
        lookups = threading.Thread(target=self.lookup_worker, name="iana-lookups", daemon=True)
        lookups.start()
        failures = 0
        try:
            while not self.stopping.is_set():
                try:
                    mailbox = self.connect()
                    failures = 0
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
                            self.bot.config.imap.idle_renew_seconds
                            if mailbox.can_idle
                            else self.bot.config.imap.poll_seconds
                        )
                        self.waiting.set()
                        try:
                            if self.stopping.is_set():
                                break
                            mailbox.wait_for_news(timeout)
                        finally:
                            self.waiting.clear()
                        self.drain(mailbox)
                except MailboxError as exc:
                    if self.stopping.is_set():
                        break  # stop() itself cut the connection to end the wait: nothing went wrong
                    failures += 1
                    delay = min(300.0, 2.0 ** min(failures, 8)) * random.uniform(0.5, 1.0)
                    log.warning("mailbox: %s; reconnecting in %.1f s", exc, delay)
                    self.stopping.wait(delay)
                finally:
                    if self.mailbox is not None:
                        self.mailbox.close()
                        self.mailbox = None
        finally:
            scheduler.shutdown(wait=True)  # lets a running job finish
            self.lookups_due.set()
            lookups.join(timeout=2 * self.bot.config.iana.timeout_seconds + 5)
            if self.bot.outbox.smtp_down_since is None:
                # Flush what is queued, but never wait long on the way out: a container stop is ~10 s.
                self.deliver(final=True)
            if self.lost_lease is None:
                self.release()
            log.info("stopped")
        if self.lost_lease is not None:
            raise LeaseHeld(self.lost_lease)

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
        self.bot.outbox.interrupt()  # a delivery waiting on a silent SMTP server ends now; mail stays queued

    def signal_handler(self, signum: int, frame: object) -> None:
        log.info("signal %s: stopping after the current message", signum)
        self.stop()


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
