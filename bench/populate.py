"""A store with history: N processed messages and N/10 requests, written with plain SQL into a store that
`secirbot.store.Store` created (the Store of the checkout the bot runs from, so the schema is the bot's own).

Rows have the sizes the bot itself writes: `messages.raw` keeps the whole message for requests and replies and
the header section for every other kind (as `pipeline._insert` does), taken from real backlog mail; each
request has its own IANA snapshot (requests resolve afresh) built from the real records, two approvers, tokens,
and the outbox rows and audit records that such a history leaves (about 1.5 mails and 4 audit records per
message; the outbox payloads are mails the bot really composed in the backlog run). Past requests are approved,
denied or expired; 10 % are still pending, with their reminders, escalation and expiry in the future, so that the
measured run does the same work at every size.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from secirbot.iana.names import TldName
from secirbot.iana.record import IanaRecord, ParsedRecord
from secirbot.iana.whois import decode_answer, parse_whois
from secirbot.message import split_raw
from secirbot.store import iso

from .mix import Item
from .rig import BOT, CHECKOUT, SECRETARIAT, cli_env

Past = Callable[[], datetime]

KIND_OF = {
    "request": "request",
    "reply": "reply",
    "auto": "automated",
    "bounce": "automated",
    "junk": "other",
    "duplicate": "other",
}
KEEP_WHOLE = {"request", "reply", "mailman"}
PURPOSES = [
    "approval-request",
    "request-copy",
    "request-received",
    "decision-requester",
    "decision-secretariat",
    "help",
    "mailman-subscribe",
    "decision-approvers",
]
ACTIONS = [
    "message-processed",
    "mail-queued",
    "mail-sent",
    "request-opened",
    "approver-asked",
    "state-changed",
    "request-decided",
    "reply-suppressed",
]


def _hex(rng: random.Random) -> str:
    return hashlib.sha256(rng.randbytes(16)).hexdigest()


def populate(
    path: Path,
    messages: int,
    requests: int,
    samples: list[Item],
    payloads: list[bytes],
    records: dict[TldName, bytes],
    now: datetime,
    seed: int = 7,
) -> None:
    """Write the history into a new store at `path` (created with the bot's own schema)."""
    rng = random.Random(seed)
    create_store(path)
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    parsed = {}
    for tld, raw in records.items():
        text = decode_answer(raw)
        record = parse_whois(text, tld)
        assert isinstance(record, ParsedRecord)
        parsed[tld] = (text, record)
    cctlds = list(parsed)
    span = timedelta(days=730)

    def past(max_age: timedelta = span) -> datetime:
        return now - timedelta(seconds=rng.uniform(86400 * 2, max_age.total_seconds()))

    conn.execute("BEGIN IMMEDIATE")
    # Requests, each with its snapshot, approvers and tokens.
    for number in range(1, requests + 1):
        tld = cctlds[rng.randrange(len(cctlds))]
        text, record = parsed[tld]
        state = rng.choices(["approved", "denied", "expired", "pending"], [35, 10, 45, 10])[0]
        created = now - timedelta(days=rng.uniform(0.5, 5)) if state == "pending" else past()
        full = IanaRecord.from_parsed(record, "whois", created, text, True)
        snapshot = conn.execute(
            "INSERT INTO iana_snapshots (tld, source, fetched_at, raw, record, problem, delegated)"
            " VALUES (?, 'whois', ?, ?, ?, NULL, 1)",
            (tld.ascii, iso(created), text, full.to_json()),
        ).lastrowid
        requester = f"member.{number}@cert.{tld.ascii}.history.example"
        decided = state in ("approved", "denied")
        approvers = full.approvers()
        conn.execute(
            "INSERT INTO requests (id, cctld, requester, requester_key, requester_name, claim, state, created_at,"
            " updated_at, expires_at, source_message, snapshot_id, decision, decided_by, decided_at, decided_via,"
            " decision_reason, mailman_status, lookup_attempts, next_lookup_at, escalation_stage,"
            " next_escalation_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, NULL, 0, ?)",
            (
                number,
                tld.ascii,
                requester,
                requester,
                f"Member {number}",
                "Name: Member\nRole: incident handler\n\nI handle security incidents for the registry. " * 3,
                state,
                iso(created),
                iso(created + timedelta(days=2)),
                iso(created + timedelta(days=14)),
                number * 5,
                snapshot,
                ("APPROVE" if state == "approved" else "DENY") if decided else None,
                approvers[0].email if decided else None,
                iso(created + timedelta(days=2)) if decided else None,
                "mail" if decided else None,
                None,
                "acknowledged" if state == "approved" else None,
                iso(now + timedelta(days=rng.uniform(2, 7))) if state == "pending" else None,
            ),
        )
        for index, approver in enumerate(approvers):
            approver_state = "asked" if state == "pending" else "used" if decided and index == 0 else "closed"
            approver_id = conn.execute(
                "INSERT INTO approvers (request_id, email, email_key, roles, name, state, asked_at, expires_at,"
                " used_at, reminders_sent, next_reminder_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                (
                    number,
                    approver.email,
                    approver.email.lower(),
                    ",".join(approver.roles),
                    approver.name,
                    approver_state,
                    iso(created),
                    iso(created + timedelta(days=14)),
                    iso(created + timedelta(days=2)) if approver_state == "used" else None,
                    iso(now + timedelta(days=rng.uniform(1, 3))) if state == "pending" else None,
                ),
            ).lastrowid
            for _ in range(rng.choice([1, 1, 2])):
                conn.execute(
                    "INSERT INTO tokens (token_hash, approver_id, issued_at) VALUES (?, ?, ?)",
                    (_hex(rng), approver_id, iso(created)),
                )

    # Messages, their outbox rows and audit records.
    conn.executemany(
        "INSERT INTO messages (folder, uidvalidity, uid, message_id, body_hash, size, processed_at, from_addr,"
        " subject, kind, detail, outcome, reason, request_id, raw) VALUES"
        " ('INBOX', 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'processed', NULL, ?, ?)",
        _message_rows(rng, messages, requests, samples, past),
    )
    conn.executemany(
        "INSERT INTO outbox (message_id, kind, purpose, request_id, cause_message, to_key, envelope_from,"
        " recipients, delivered, payload, state, attempts, next_attempt_at, created_at, sent_at)"
        " VALUES (?, 'mail', ?, ?, ?, ?, ?, '[]', ?, ?, 'sent', 1, ?, ?, ?)",
        _outbox_rows(rng, messages * 3 // 2, messages, requests, payloads, past),
    )
    conn.executemany(
        "INSERT INTO audit (at, actor, action, request_id, message_row, outbox_id, details) VALUES"
        " (?, 'bot', ?, ?, ?, ?, ?)",
        _audit_rows(rng, messages * 4, messages, requests, past),
    )
    far = iso(now + timedelta(days=6))
    for key in ("next:digest", "next:recheck"):
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, far))
    conn.execute("COMMIT")
    conn.close()


def create_store(path: Path) -> None:
    """The empty store, made by `Store` of the checkout the bot runs from (so its schema is the bot's own)."""
    script = "import sys; from secirbot.store import Store; Store(sys.argv[1]).close()"
    subprocess.run([sys.executable, "-c", script, str(path)], cwd=CHECKOUT.path, env=cli_env(), check=True)


def _kind(label: str) -> str:
    return KIND_OF.get(label.split("-")[0], "other")


def _message_rows(rng: random.Random, count: int, requests: int, samples: list[Item], past: Past) -> Iterator[tuple]:
    for uid in range(1, count + 1):
        item = samples[rng.randrange(len(samples))]
        kind = _kind(item.label)
        raw = item.raw if kind in KEEP_WHOLE else split_raw(item.raw)[0]
        yield (
            uid,
            f"<history-{uid}@mail.history.example>",
            _hex(rng),
            len(item.raw),
            iso(past()),
            f"sender{uid % 5000}@history.example",
            item.label,
            kind,
            item.label,
            rng.randint(1, requests) if kind in ("request", "reply") else None,
            raw,
        )


def _outbox_rows(
    rng: random.Random, count: int, messages: int, requests: int, payloads: list[bytes], past: Past
) -> Iterator[tuple]:
    for number in range(1, count + 1):
        to = rng.choice([SECRETARIAT, f"sender{number % 5000}@history.example", f"admin{number % 700}@nic.example"])
        when = iso(past())
        yield (
            f"<history-out-{number}@lists.example.org>",
            rng.choice(PURPOSES),
            rng.randint(1, requests),
            rng.randint(1, messages),
            to.lower(),
            BOT,
            json.dumps([to]),
            payloads[number % len(payloads)],
            when,
            when,
            when,
        )


def _audit_rows(rng: random.Random, count: int, messages: int, requests: int, past: Past) -> Iterator[tuple]:
    for _ in range(count):
        details = {
            "kind": "request",
            "detail": "request-opened",
            "signals": ["subject-keyword"],
            "to": [f"admin{rng.randrange(700)}@nic.example"],
            "purpose": rng.choice(PURPOSES),
            "message_id": f"<{_hex(rng)[:24]}@lists.example.org>",
        }
        yield (
            iso(past()),
            rng.choice(ACTIONS),
            rng.randint(1, requests),
            rng.randint(1, messages),
            None,
            json.dumps(details, sort_keys=True),
        )


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
