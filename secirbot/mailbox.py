"""The IMAP edge: connect, list what waits in the folder, fetch it, file it afterwards, wait for news.

Only this module talks IMAP (through `imapclient`). It never decides anything: it hands raw bytes up and
files a message in `Processed` or `Failed` only when told to, after the store has committed. Every
network or protocol failure surfaces as `MailboxError`, which the caller answers by reconnecting.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import imapclient
import imapclient.exceptions

from .config import ImapConfig
from .tls import tls_context

log = logging.getLogger(__name__)

PROCESSED_FLAG = "$SecirbotProcessed"
_NETWORK_ERRORS = (
    OSError,
    ssl.SSLError,
    socket.timeout,
    imapclient.exceptions.IMAPClientError,
    imapclient.imaplib.IMAP4.error,
    imapclient.imaplib.IMAP4.abort,
    EOFError,
)


class MailboxError(Exception):
    """The IMAP server could not be reached or refused an operation; reconnect and try again."""


class MailboxAuthError(MailboxError):
    """The IMAP server refused the login: retrying at once cannot help, the operator must fix the
    credentials (imap.username, imap.password) or the account."""


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes
    size: int
    headers_only: bool = False  # the message was larger than imap.max_message_size


class Mailbox:
    """One logged-in IMAP session on the bot's folder."""

    def __init__(self, config: ImapConfig):
        self.config = config
        self.client: imapclient.IMAPClient | None = None
        self.uidvalidity: int = 0
        self.folders: dict[str, str] = {}
        self.can_idle = False
        self.can_move = False
        self.selected = config.folder

    # --- session ------------------------------------------------------------------------------

    def connect(self, folder: str | None = None) -> None:
        """Log in, make sure Processed and Failed exist, select the folder (default: imap.folder).
        Raises MailboxError."""
        self.close()
        cfg = self.config
        context = tls_context(str(cfg.ca_file) if cfg.ca_file else None, cfg.tls_verify)
        try:
            client = imapclient.IMAPClient(
                cfg.host, port=cfg.port, ssl=cfg.security == "tls", ssl_context=context, timeout=cfg.timeout_seconds
            )
            if cfg.security == "starttls":
                client.starttls(context)
            client.login(cfg.username or "", cfg.password or "")
            capabilities = {c.upper() for c in client.capabilities()}
            self.can_idle = b"IDLE" in capabilities
            self.can_move = b"MOVE" in capabilities
            self.client = client
            self.folders = {
                "processed": self._ensure_folder(cfg.processed_folder),
                "failed": self._ensure_folder(cfg.failed_folder),
            }
            selected = cfg.folder if folder is None else self._ensure_folder(folder)
            self.selected = selected
            self.uidvalidity = int(client.select_folder(selected)[b"UIDVALIDITY"])
        except imapclient.exceptions.LoginError as exc:
            self.close()
            raise MailboxAuthError(
                f"IMAP login as {cfg.username!r} on {cfg.host}:{cfg.port} was refused: {_text(exc)}"
            ) from exc
        except _NETWORK_ERRORS as exc:
            self.close()
            raise MailboxError(f"IMAP {cfg.host}:{cfg.port}: {_text(exc)}") from exc

    def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            client.logout()
        except _NETWORK_ERRORS:
            with contextlib.suppress(*_NETWORK_ERRORS):
                client.shutdown()

    def _ensure_folder(self, name: str) -> str:
        assert self.client is not None
        full = name
        namespace = self.client.namespace()
        personal = namespace.personal[0] if namespace.personal else None
        # Servers such as Courier keep every folder under "INBOX." - honour their personal namespace.
        if personal and personal[0] and not name.startswith(personal[0]):
            full = personal[0] + name
        if not self.client.folder_exists(full):
            self.client.create_folder(full)
            log.info("created IMAP folder %s", full)
        return full

    def _session(self) -> imapclient.IMAPClient:
        if self.client is None:
            raise MailboxError("not connected")
        return self.client

    # --- reading ------------------------------------------------------------------------------

    def pending(self) -> list[int]:
        """UIDs waiting in the folder, oldest first (processed mail is moved out, so all that is here)."""
        try:
            uids = self._session().search(["NOT", "DELETED"])
        except _NETWORK_ERRORS as exc:
            raise MailboxError(f"IMAP search failed: {_text(exc)}") from exc
        return sorted(int(uid) for uid in uids)

    def fetch(self, uids: Sequence[int]) -> Iterator[Fetched]:
        """Fetch without setting \\Seen (BODY.PEEK[]), batch by batch. Oversized mail: headers only."""
        client = self._session()
        size = self.config.batch_size
        for start in range(0, len(uids), size):
            batch = list(uids[start : start + size])
            try:
                sizes = client.fetch(batch, ["RFC822.SIZE"])
                whole = [u for u in batch if sizes.get(u, {}).get(b"RFC822.SIZE", 0) <= self.config.max_message_size]
                large = [u for u in batch if u in sizes and u not in whole]
                bodies = client.fetch(whole, ["BODY.PEEK[]"]) if whole else {}
                heads = client.fetch(large, ["BODY.PEEK[HEADER]"]) if large else {}
            except _NETWORK_ERRORS as exc:
                raise MailboxError(f"IMAP fetch failed: {_text(exc)}") from exc
            for uid in batch:
                if uid in bodies and b"BODY[]" in bodies[uid]:
                    yield Fetched(uid, bodies[uid][b"BODY[]"], sizes[uid][b"RFC822.SIZE"])
                elif uid in heads and b"BODY[HEADER]" in heads[uid]:
                    yield Fetched(uid, heads[uid][b"BODY[HEADER]"], sizes[uid][b"RFC822.SIZE"], headers_only=True)
                # A UID that vanished between search and fetch (another client expunged it) is skipped.

    def headers(self, uids: Sequence[int]) -> dict[int, bytes]:
        """The header section of each message (BODY.PEEK[HEADER])."""
        if not uids:
            return {}
        try:
            found = self._session().fetch(list(uids), ["BODY.PEEK[HEADER]"])
        except _NETWORK_ERRORS as exc:
            raise MailboxError(f"IMAP fetch failed: {_text(exc)}") from exc
        return {uid: data[b"BODY[HEADER]"] for uid, data in found.items() if b"BODY[HEADER]" in data}

    def append_to_folder(self, raw: bytes) -> None:
        """APPEND a message to the selected folder."""
        try:
            self._session().append(self.selected, raw, flags=[imapclient.SEEN])
        except _NETWORK_ERRORS as exc:
            raise MailboxError(f"IMAP append failed: {_text(exc)}") from exc

    def delete_uids(self, uids: Sequence[int]) -> None:
        """Remove messages from the selected folder for good."""
        if not uids:
            return
        client = self._session()
        try:
            client.delete_messages(list(uids), silent=True)
            client.uid_expunge(list(uids)) if client.has_capability("UIDPLUS") else client.expunge()
        except _NETWORK_ERRORS as exc:
            raise MailboxError(f"IMAP delete failed: {_text(exc)}") from exc

    # --- filing -------------------------------------------------------------------------------

    def file(self, uids: Sequence[int], where: str) -> None:
        """Mark and move messages to the 'processed' or 'failed' folder. Call only after the commit."""
        if not uids:
            return
        client = self._session()
        target = self.folders[where]
        try:
            client.add_flags(list(uids), [imapclient.SEEN, PROCESSED_FLAG.encode()], silent=True)
            if self.can_move:
                client.move(list(uids), target)
            else:
                client.copy(list(uids), target)
                client.delete_messages(list(uids), silent=True)
                client.uid_expunge(list(uids)) if client.has_capability("UIDPLUS") else client.expunge()
        except _NETWORK_ERRORS as exc:
            raise MailboxError(f"IMAP move to {target} failed: {_text(exc)}") from exc

    def interrupt(self) -> None:
        """End a blocking wait from another thread or a signal handler (the session is then unusable)."""
        client = self.client
        if client is None:
            return
        with contextlib.suppress(OSError):
            client.socket().shutdown(socket.SHUT_RDWR)

    # --- waiting ------------------------------------------------------------------------------

    def wait_for_news(self, timeout: float) -> bool:
        """Block until the server reports new mail (IDLE) or `timeout` passes (poll). True = look now.

        A dead connection makes imapclient's idle_check() return [] at once, forever, without raising:
        a return much sooner than asked, with nothing in it, is treated as a dropped connection.
        """
        client = self._session()
        if not self.can_idle:
            try:
                client.noop()
            except _NETWORK_ERRORS as exc:
                raise MailboxError(f"IMAP NOOP failed: {_text(exc)}") from exc
            return False
        try:
            client.idle()
            started = time.monotonic()
            responses = client.idle_check(timeout=timeout)
            elapsed = time.monotonic() - started
            client.idle_done()
        except _NETWORK_ERRORS as exc:
            raise MailboxError(f"IMAP IDLE failed: {_text(exc)}") from exc
        if any(isinstance(r, tuple) and len(r) > 1 and r[1] == b"BYE" for r in responses):
            raise MailboxError("the IMAP server said BYE")
        if not responses and elapsed < timeout * 0.5:
            raise MailboxError("the IMAP connection dropped (IDLE returned at once with nothing)")
        return any(isinstance(r, tuple) and len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses)


def _text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text
