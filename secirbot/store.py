"""The SQLite store: schema, migrations, transactions and the audit trail.

Everything the bot knows lives here and nowhere else: processed messages, requests and their approver
tokens, IANA snapshots, the outbox, and one audit record per state change. A message's record, its
classification and the mail it causes are written in one transaction (`Store.transaction`).

What the file system or SQLite says about the store itself (read-only, not a database, damaged, disk
full, locked for too long) is raised as `StoreError`, one line naming the path and what to do; SQL
mistakes and constraint violations stay `sqlite3` errors (they are ours, not the operator's).
`Store(path, readonly=True)` opens an existing store without writing anything (`check`, `check --health`).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

# The time helpers live in clock.py; importable from here as before.
from .clock import from_iso as from_iso
from .clock import iso as iso
from .clock import utcnow as utcnow

SCHEMA_VERSION = 5

_SCHEMA = [
    # version 1
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

    CREATE TABLE folder_state (
        folder TEXT PRIMARY KEY,
        uidvalidity INTEGER NOT NULL,
        checked_at TEXT NOT NULL
    );

    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        folder TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        message_id TEXT,
        body_hash TEXT NOT NULL,
        size INTEGER NOT NULL,
        processed_at TEXT NOT NULL,
        from_addr TEXT,
        subject TEXT,
        kind TEXT NOT NULL,
        detail TEXT,
        outcome TEXT NOT NULL,          -- processed | failed | duplicate
        reason TEXT,
        request_id INTEGER,
        raw BLOB,                       -- whole message for requests and replies, headers otherwise
        UNIQUE (folder, uidvalidity, uid)
    );
    CREATE INDEX messages_message_id ON messages (message_id);

    CREATE TABLE iana_snapshots (
        id INTEGER PRIMARY KEY,
        tld TEXT NOT NULL,              -- lower-case A-label
        source TEXT NOT NULL,           -- whois | rdap
        fetched_at TEXT NOT NULL,
        raw TEXT NOT NULL,
        record TEXT,                    -- JSON of the validated record; NULL when not usable
        problem TEXT,                   -- why it is not usable
        delegated INTEGER               -- root NS check: 1, 0, NULL = not known
    );
    CREATE INDEX iana_snapshots_tld ON iana_snapshots (tld, fetched_at);

    CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        cctld TEXT NOT NULL,            -- lower-case A-label
        requester TEXT NOT NULL,        -- as written
        requester_key TEXT NOT NULL,    -- lower-cased, for comparisons
        requester_name TEXT,
        claim TEXT,                     -- the requester's own, unverified words
        state TEXT NOT NULL,            -- resolving | pending | approved | denied | expired | withdrawn
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        source_message INTEGER,
        snapshot_id INTEGER REFERENCES iana_snapshots (id),
        decision TEXT,
        decided_by TEXT,
        decided_at TEXT,
        decided_via TEXT,
        decision_reason TEXT,
        mailman_status TEXT,
        lookup_attempts INTEGER NOT NULL DEFAULT 0,
        next_lookup_at TEXT,
        escalation_stage INTEGER NOT NULL DEFAULT 0,
        next_escalation_at TEXT
    );
    CREATE INDEX requests_requester ON requests (requester_key, state);
    CREATE INDEX requests_cctld ON requests (cctld, state);
    CREATE INDEX requests_state ON requests (state);

    CREATE TABLE approvers (
        id INTEGER PRIMARY KEY,
        request_id INTEGER NOT NULL REFERENCES requests (id),
        email TEXT NOT NULL,            -- as IANA lists it; mail goes here
        email_key TEXT NOT NULL,        -- lower-cased, for comparisons
        roles TEXT NOT NULL,            -- comma-separated IANA roles
        name TEXT,
        state TEXT NOT NULL,            -- asked | used | bounced | away | closed
        asked_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT,
        reminders_sent INTEGER NOT NULL DEFAULT 0,
        next_reminder_at TEXT,
        UNIQUE (request_id, email_key)
    );

    -- One row per approval mail (the request, each reminder): any of an approver's tokens decides,
    -- and a decision closes them all. Only the SHA-256 of a token is stored.
    CREATE TABLE tokens (
        token_hash TEXT PRIMARY KEY,
        approver_id INTEGER NOT NULL REFERENCES approvers (id),
        issued_at TEXT NOT NULL
    );

    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,             -- mail | mailman-rest
        purpose TEXT NOT NULL,          -- template name or action
        request_id INTEGER,
        cause_message INTEGER,
        to_key TEXT,                    -- lower-cased main recipient, for once-per-day limits
        envelope_from TEXT NOT NULL,
        recipients TEXT NOT NULL,       -- JSON: addresses still to deliver to
        delivered TEXT NOT NULL DEFAULT '[]',
        failed TEXT NOT NULL DEFAULT '[]',
        payload BLOB NOT NULL,          -- the composed message (or the REST call as JSON)
        state TEXT NOT NULL,            -- queued | sent | failed
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT
    );
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
    CREATE INDEX outbox_to ON outbox (to_key, purpose, created_at);

    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,            -- bot | cli:<user> | an e-mail address
        action TEXT NOT NULL,
        request_id INTEGER,
        message_row INTEGER,
        outbox_id INTEGER,
        details TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_request ON audit (request_id);
    """,
    # version 2: invitations sent with `secirbot invite`
    """
    CREATE TABLE invitations (
        id INTEGER PRIMARY KEY,
        cctld TEXT NOT NULL,
        invited_at TEXT NOT NULL,
        invited_by TEXT NOT NULL,
        snapshot_id INTEGER REFERENCES iana_snapshots (id),
        recipients TEXT NOT NULL        -- JSON list of the contacts written to
    );
    CREATE INDEX invitations_cctld ON invitations (cctld, invited_at);

    -- a message without Message-ID is recognised by its whole bytes when it comes back
    ALTER TABLE messages ADD COLUMN raw_hash TEXT;
    CREATE INDEX messages_raw_hash ON messages (raw_hash);

    -- rate limits count the requests of the last hour; bounces and auto-replies find approvers by address
    CREATE INDEX requests_created ON requests (created_at);
    CREATE INDEX approvers_email ON approvers (email_key, state);
    """,
    # version 3: the requester's own reply address (WITHDRAW), apart from the approvers' tokens
    """
    CREATE TABLE requester_tokens (
        token_hash TEXT PRIMARY KEY,
        request_id INTEGER NOT NULL REFERENCES requests (id),
        issued_at TEXT NOT NULL
    );

    -- who sent machine mail lately: no help or clarification goes to an address that auto-replied
    CREATE INDEX messages_from ON messages (from_addr COLLATE NOCASE, processed_at);
    """,
    # version 4: the roster (secirbot/roster.py), one row per address that is or was on the list, filled
    # from the requests approved before it existed; delegated answers (secirbot/delegation.py)
    """
    CREATE TABLE members (
        id INTEGER PRIMARY KEY,
        address TEXT NOT NULL,          -- as subscribed
        address_key TEXT NOT NULL UNIQUE,
        cctld TEXT NOT NULL,            -- lower-case A-label
        name TEXT,
        state TEXT NOT NULL,            -- member | leaving | removed
        source TEXT NOT NULL,           -- admitted | imported | mailman
        since TEXT NOT NULL,
        approved_by TEXT,
        request_id INTEGER REFERENCES requests (id),
        updated_at TEXT NOT NULL,
        removed_at TEXT,
        removed_by TEXT,
        reason TEXT
    );
    CREATE INDEX members_cctld ON members (cctld, state);

    -- answers given with a contact's token by a person behind it (secirbot/delegation.py)
    CREATE TABLE delegations (
        id INTEGER PRIMARY KEY,
        request_id INTEGER NOT NULL REFERENCES requests (id),
        approver_id INTEGER NOT NULL REFERENCES approvers (id),  -- the IANA contact C answered for
        delegate TEXT NOT NULL,         -- P, as written in From
        delegate_key TEXT NOT NULL,
        verdict TEXT NOT NULL,          -- APPROVE | DENY
        state TEXT NOT NULL,            -- waiting | effective | objected | superseded
        authentication TEXT NOT NULL,   -- JSON: which check passed for P
        created_at TEXT NOT NULL,
        takes_effect_at TEXT,           -- APPROVE: the end of the objection window
        ended_at TEXT,
        ended_by TEXT,
        message_row INTEGER
    );
    CREATE INDEX delegations_request ON delegations (request_id, state);
    CREATE INDEX delegations_due ON delegations (state, takes_effect_at);

    -- mail that asks an IANA contact to confirm something about members (secirbot/confirmations.py):
    -- `remove` (reply CONFIRM to remove one member) and `revet` (reply REMOVE ADDRESS lines)
    CREATE TABLE confirmations (
        id INTEGER PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,             -- remove | revet
        cctld TEXT NOT NULL,
        contact TEXT NOT NULL,          -- the address it was sent to
        address TEXT,                   -- remove: the member to remove
        state TEXT NOT NULL,            -- open | used
        issued_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT
    );
    CREATE TABLE revets (
        cctld TEXT PRIMARY KEY,
        last_at TEXT NOT NULL,          -- when the contacts were last sent the member list
        contacts TEXT NOT NULL          -- the contact addresses then, sorted: a change re-vets at once
    );

    -- a request's `replacing ADDRESS` line: the member it takes over from (past the seat cap)
    ALTER TABLE requests ADD COLUMN replacing TEXT;

    INSERT INTO members (address, address_key, cctld, name, state, source, since, approved_by, request_id,
                         updated_at)
    SELECT requester, requester_key, cctld, requester_name, 'member', 'admitted',
           COALESCE(decided_at, updated_at), decided_by, id, updated_at
    FROM requests r WHERE state = 'approved'
      AND id = (SELECT MAX(id) FROM requests WHERE requester_key = r.requester_key AND state = 'approved');
    """,
    # version 5: what a delivery answered, written by the outbox with the attempt and applied afterwards by
    # secirbot/settle.py (a failed recipient, Mailman's REST answer); the hooks of version 4 applied them
    # inside the attempt's own transaction, so a v4 store has nothing left to settle
    """
    CREATE TABLE delivery_events (
        id INTEGER PRIMARY KEY,
        outbox_id INTEGER NOT NULL REFERENCES outbox (id),
        at TEXT NOT NULL,
        kind TEXT NOT NULL,             -- failed | mailman-answered
        details TEXT NOT NULL,          -- JSON: failed: to, error; mailman-answered: http, said, error, gave_up
        settled_at TEXT                 -- NULL until its consequences are written
    );
    CREATE INDEX delivery_events_unsettled ON delivery_events (settled_at, id);
    """,
]


def rowid(cur: sqlite3.Cursor) -> int:
    """The id of the row an INSERT just wrote."""
    if cur.lastrowid is None:
        raise StoreError("an INSERT reported no row id")
    return cur.lastrowid


class StoreError(Exception):
    """The store (or a lock file beside it) cannot be used, or is from a newer version of secirbot.

    The text is one line for the operator: the path, what is wrong and what to do."""


BUSY_TIMEOUT_SECONDS = 30

# SQLite's primary result codes that are about the file, the disk or other processes, not about our SQL:
# what the operator has to fix (https://www.sqlite.org/rescode.html).
_OPERATOR_ADVICE = {
    3: "is not accessible ({error}): check its owner and mode",  # PERM
    5: f"stayed locked by another process for more than {BUSY_TIMEOUT_SECONDS} s ({{error}}): look for "
    "a hung secirbot or another program holding it open",  # BUSY
    6: f"stayed locked for more than {BUSY_TIMEOUT_SECONDS} s ({{error}}): look for a hung secirbot",  # LOCKED
    8: "is read-only ({error}): the user running secirbot must be able to write the file, its -wal and "
    "-shm files and its folder (check owner, mode, `lsattr`/`chattr -i`, read-only mounts)",  # READONLY
    10: "could not be read or written ({error}): check the disk and the file system (dmesg)",  # IOERR
    11: "is damaged ({error}): restore it from a backup, or move it away and the bot starts an empty one",
    13: "cannot grow ({error}): free space on its file system",  # FULL
    14: "cannot be opened ({error}): its folder must exist and be writable by the user running secirbot",
    26: "is not a SQLite database ({error}): check store.path; restore the file from a backup, or move it "
    "away and the bot starts an empty one",  # NOTADB
}


def operator_error(path: Path | str, exc: sqlite3.Error) -> StoreError | None:
    """The one-line StoreError for an error the operator must fix, or None for a programming error."""
    code = getattr(exc, "sqlite_errorcode", None)
    advice = _OPERATOR_ADVICE.get(code & 0xFF) if isinstance(code, int) else None
    if advice is None:
        return None
    return StoreError(f"the store {path} " + advice.format(error=str(exc).splitlines()[0] if str(exc) else code))


class Store:
    """One SQLite database. Use `transaction()` for every write; reads may run outside one.

    `readonly=True` opens an existing store as it is: no folder or file is created, nothing migrated or
    written (SQLite may still leave its -wal/-shm files beside a WAL database)."""

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        # One connection is shared by the mail loop and the scheduler thread; this lock keeps a
        # transaction from interleaving with another thread's statements.
        self.lock = threading.RLock()
        self._depth = 0
        memory = str(path) == ":memory:"
        try:
            if readonly:
                uri = "file:" + urllib.parse.quote(str(self.path.resolve())) + "?mode=ro"
                self.conn = sqlite3.connect(
                    uri, uri=True, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_SECONDS
                )
            else:
                if not memory:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(
                    str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_SECONDS
                )
        except OSError as exc:
            raise StoreError(
                f"cannot create the folder of the store {path}: {exc.strerror or exc}: "
                "store.path must name a file in a writable folder"
            ) from None
        except sqlite3.Error as exc:
            raise operator_error(path, exc) or StoreError(f"cannot open the store {path}: {exc}") from None
        self.conn.row_factory = sqlite3.Row
        with self._translated():
            if readonly:
                # The first read is where SQLite finds out that a file is not a database.
                self.version: int = self.conn.execute("PRAGMA user_version").fetchone()[0]
                self._refuse_newer(self.version)
                self._refuse_older(self.version)
            else:
                self._wal()
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.execute("PRAGMA foreign_keys=ON")
                self.version = self._migrate()

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn what SQLite says about the file into one StoreError line; leave SQL mistakes as they are."""
        try:
            yield
        except sqlite3.Error as exc:
            translated = operator_error(self.path, exc)
            if translated is None:
                raise
            raise translated from None

    def _wal(self) -> None:
        """Switch to WAL. SQLite answers SQLITE_BUSY at once, without its busy timeout, while another
        process switches a new store at the same moment: so wait here, as long as the busy timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", 0) & 0xFF != 5 or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store {self.path} has schema version {version}; this secirbot knows "
                f"only up to {SCHEMA_VERSION}: upgrade secirbot"
            )

    def _refuse_older(self, version: int) -> None:
        # A read-only command cannot migrate, and answering from an older schema would leave out what the
        # newer one holds (the roster): say so instead of answering wrong.
        if 0 < version < SCHEMA_VERSION:
            self.conn.close()
            raise StoreError(
                f"the store {self.path} has schema version {version} and this secirbot uses {SCHEMA_VERSION}: "
                "start the bot once (`secirbot run --once`) to upgrade it, then ask again"
            )

    def _migrate(self) -> int:
        """Bring the schema up to SCHEMA_VERSION, atomically against other processes; returns the version.

        The version is read inside BEGIN IMMEDIATE: read before it, two processes starting on a new store
        (the daemon and a `lookup`) would both see 0 and the second would fail with "table meta already
        exists". The same transaction proves that the store is writable: a read-only file is refused here,
        at start-up, not at the first message."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                version = self.conn.execute("PRAGMA user_version").fetchone()[0]
                self._refuse_newer(version)
                if version == SCHEMA_VERSION:
                    # Nothing to migrate: a write that is rolled back, only to find a read-only store now.
                    self.conn.execute(f"PRAGMA user_version = {version}")
                    self.conn.execute("ROLLBACK")
                    return version
                for number in range(version, SCHEMA_VERSION):
                    # executescript() would COMMIT on its own; statement by statement keeps one txn.
                    for statement in _split_sql(_SCHEMA[number]):
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self.conn.execute("COMMIT")
                return SCHEMA_VERSION
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        # SQLite may already have rolled back by itself (disk full, I/O error): then ROLLBACK fails too,
        # and the error worth reporting is the first one.
        with contextlib.suppress(sqlite3.Error):
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")

    def integrity_problem(self) -> str | None:
        """None if SQLite's quick_check finds the file sound, else its first complaint (reads every page)."""
        with self.lock, self._translated():
            rows = self.conn.execute("PRAGMA quick_check(1)").fetchall()
        first = str(rows[0][0]) if rows else "no answer"
        if first == "ok":
            return None
        # SQLite's answer spans lines ("*** in database main ***\nPage 3: ..."): one line for the operator.
        return "; ".join(line for line in first.splitlines() if line.strip() and not line.startswith("***"))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception. Nested use joins the outer one."""
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            with self._translated():
                self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                # Callers may use the yielded connection directly: what SQLite says about the file is
                # translated here too.
                with self._translated():
                    yield self.conn
            except BaseException:
                self._depth = 0
                self._rollback()
                raise
            self._depth = 0
            try:
                with self._translated():
                    self.conn.execute("COMMIT")
            except BaseException:
                self._rollback()  # COMMIT failed (disk full, busy): nothing of it may stay half-open
                raise

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        with self.lock, self._translated():
            return self.conn.execute(sql, params)

    def count(self, sql: str, params: tuple | dict = ()) -> int:
        """The number a `SELECT COUNT(*) ...` (or any one-value query) gives; 0 for no row."""
        row = self.one(sql, params)
        return int(row[0]) if row is not None and row[0] is not None else 0

    def one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        with self.lock, self._translated():
            return self.conn.execute(sql, params).fetchone()

    def all(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        with self.lock, self._translated():
            return self.conn.execute(sql, params).fetchall()

    def audit(
        self,
        action: str,
        *,
        at: datetime,
        actor: str = "bot",
        request_id: int | None = None,
        message_row: int | None = None,
        outbox_id: int | None = None,
        **details: Any,
    ) -> int:
        """Record one state change. Call inside the transaction that makes the change."""
        cur = self.execute(
            "INSERT INTO audit (at, actor, action, request_id, message_row, outbox_id, details)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                iso(at),
                actor,
                action,
                request_id,
                message_row,
                outbox_id,
                json.dumps(details, ensure_ascii=False, sort_keys=True, default=str),
            ),
        )
        return rowid(cur)

    def get_meta(self, key: str) -> str | None:
        row = self.one("SELECT value FROM meta WHERE key = ?", (key,))
        return row["value"] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def _split_sql(script: str) -> list[str]:
    """Statements of a schema script (no semicolons inside our statements, comments stripped)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]
