"""One bot per mailbox, across machines and containers: a lease kept on the IMAP server itself.

A lock file only sees processes on one host. Two containers with their own /tmp and their own volume
share nothing but the mailbox, so the lease lives there: a small message in its own folder saying who
holds the mailbox and until when. Taking it: read the folder; if someone else's lease is still valid,
refuse; else append ours and read again, and if two bots appended at once the lower UID wins and the
other withdraws. The holder renews it from its scheduler tick; a crashed holder's lease runs out after
`imap.lease_seconds`, and the same deployment (same store, same instance id) may take it over at once.
"""

from __future__ import annotations

import email.utils
import logging
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesHeaderParser

from .config import ImapConfig
from .mailbox import Mailbox, MailboxError
from .store import Store, from_iso, iso

log = logging.getLogger(__name__)

HOLDER = "X-Secirbot-Lease-Holder"
UNTIL = "X-Secirbot-Lease-Until"
INSTANCE_KEY = "instance_id"


class LeaseHeld(Exception):
    """Another bot holds this mailbox."""


@dataclass(frozen=True)
class _Entry:
    uid: int
    instance: str
    holder: str
    until: datetime


def instance_id(store: Store) -> str:
    """This deployment's id, kept in its store so that a restart recognises its own lease."""
    with store.transaction():
        value = store.get_meta(INSTANCE_KEY)
        if value is None:
            value = uuid.uuid4().hex
            store.set_meta(INSTANCE_KEY, value)
    return value


class Lease:
    def __init__(self, config: ImapConfig, instance: str, now: Callable[[], datetime]):
        self.config = config
        self.instance = instance
        self.now = now
        self.holder = f"{instance} on {socket.gethostname()}"

    def acquire(self) -> None:
        """Take the lease or raise LeaseHeld (MailboxError if the server cannot be reached)."""
        self._with_folder(self._take)

    def renew(self) -> None:
        """Extend it; raises LeaseHeld if another bot took the mailbox in the meantime."""
        self._with_folder(self._take)

    def release(self) -> None:
        def drop(mailbox: Mailbox, entries: list[_Entry]) -> None:
            mailbox.delete_uids([e.uid for e in entries if e.instance == self.instance])

        try:
            self._with_folder(drop)
        except MailboxError as exc:  # it runs out by itself
            log.warning("could not release the mailbox lease: %s", exc)

    # ---------------------------------------------------------------------------------------------

    def _with_folder(self, action: Callable[[Mailbox, list[_Entry]], None]) -> None:
        mailbox = Mailbox(self.config)
        try:
            mailbox.connect(folder=self.config.lease_folder)
            action(mailbox, self._read(mailbox))
        finally:
            mailbox.close()

    def _read(self, mailbox: Mailbox) -> list[_Entry]:
        entries = []
        parser = BytesHeaderParser()
        for uid, head in mailbox.headers(mailbox.pending()).items():
            msg = parser.parsebytes(head)
            holder, until = msg.get(HOLDER, ""), msg.get(UNTIL, "")
            try:
                entries.append(_Entry(uid, holder.split(" ", 1)[0], holder, from_iso(until.strip())))
            except ValueError:
                continue  # not a lease: ignore, and it goes when the next lease is written
        return sorted(entries, key=lambda e: e.uid)

    def _take(self, mailbox: Mailbox, entries: list[_Entry]) -> None:
        now = self.now()
        others = [e for e in entries if e.instance != self.instance and e.until > now]
        if others:
            raise LeaseHeld(self._held_message(others[0]))
        mailbox.append_to_folder(self._message(now + timedelta(seconds=self.config.lease_seconds)))
        after = self._read(mailbox)
        mine = [e for e in after if e.instance == self.instance]
        rivals = [e for e in after if e.instance != self.instance and e.until > now]
        if rivals and mine and rivals[0].uid < mine[-1].uid:  # two started at once: the first append wins
            mailbox.delete_uids([mine[-1].uid])
            raise LeaseHeld(self._held_message(rivals[0]))
        # Keep only our newest lease; drop ours before it and every expired one.
        mailbox.delete_uids(
            [e.uid for e in after if e is not mine[-1] and (e.instance == self.instance or e.until <= now)]
        )

    def _held_message(self, entry: _Entry) -> str:
        return (
            f"another secirbot ({entry.holder}) holds this mailbox ({self.config.username}@{self.config.host}"
            f"/{self.config.folder}) until {iso(entry.until)}; refusing to start a second one "
            f"(its lease is in the IMAP folder {self.config.lease_folder})"
        )

    def _message(self, until: datetime) -> bytes:
        msg = EmailMessage()
        msg["From"] = "secirbot lease <lease@secirbot.invalid>"
        msg["Subject"] = f"secirbot holds this mailbox until {iso(until)}"
        msg["Date"] = email.utils.format_datetime(self.now())
        msg[HOLDER] = self.holder
        msg[UNTIL] = iso(until)
        msg.set_content(
            "This message marks which secirbot instance reads this mailbox. Do not delete it while "
            "the bot runs; it expires by itself.\n"
        )
        return msg.as_bytes()
