"""The SQLite store: schema, migrations, transactions and the audit trail.

Everything the bot knows lives here and nowhere else: processed messages, requests and their approver
tokens, IANA snapshots, the outbox, and one audit record per state change. A message's record, its
classification and the mail it causes are written in one transaction (`Store.transaction`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2

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
]


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    """The one text form of a moment in the store: UTC, seconds, 'Z' (sorts as text)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


class StoreError(Exception):
    """The store cannot be opened or is from a newer version of secirbot."""


class Store:
    """One SQLite database. Use `transaction()` for every write; reads may run outside one."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                        timeout=30)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store {path}: {exc}") from exc
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        # One connection is shared by the mail loop and the scheduler thread; this lock keeps a
        # transaction from interleaving with another thread's statements.
        self.lock = threading.RLock()
        self._depth = 0
        self._migrate()

    def close(self) -> None:
        self.conn.close()

    def _migrate(self) -> None:
        with self.lock:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"the store {self.path} has schema version {version}; this secirbot knows "
                                 f"only up to {SCHEMA_VERSION}: upgrade secirbot")
            for number in range(version, SCHEMA_VERSION):
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    # executescript() would COMMIT on its own; statement by statement keeps one txn.
                    for statement in _split_sql(_SCHEMA[number]):
                        self.conn.execute(statement)
                    self.conn.execute(f"PRAGMA user_version = {number + 1}")
                    self.conn.execute("COMMIT")
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise

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
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.conn
            except BaseException:
                self._depth = 0
                self.conn.execute("ROLLBACK")
                raise
            self._depth = 0
            self.conn.execute("COMMIT")

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        with self.lock:
            return self.conn.execute(sql, params)

    def one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        with self.lock:
            return self.conn.execute(sql, params).fetchone()

    def all(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def audit(self, action: str, *, at: datetime, actor: str = "bot", request_id: int | None = None,
              message_row: int | None = None, outbox_id: int | None = None, **details: Any) -> int:
        """Record one state change. Call inside the transaction that makes the change."""
        cur = self.execute(
            "INSERT INTO audit (at, actor, action, request_id, message_row, outbox_id, details)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (iso(at), actor, action, request_id, message_row, outbox_id,
             json.dumps(details, ensure_ascii=False, sort_keys=True, default=str)),
        )
        return int(cur.lastrowid)

    def get_meta(self, key: str) -> str | None:
        row = self.one("SELECT value FROM meta WHERE key = ?", (key,))
        return row["value"] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.execute("INSERT INTO meta (key, value) VALUES (?, ?)"
                     " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))


def _split_sql(script: str) -> list[str]:
    """Statements of a schema script (no semicolons inside our statements, comments stripped)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]
