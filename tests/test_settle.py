"""What deliveries answered (secirbot/settle.py): the outbox writes it as a delivery event with the attempt and
never acts on it; settling writes the consequences once, also when a crash came between the two; an event
that cannot be settled is audited, not retried for ever; a store from schema 4 has nothing left to settle."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from secirbot.settle import settle
from secirbot.store import _SCHEMA, SCHEMA_VERSION, Store, _split_sql
from tests.harness import SECRETARIAT, World
from tests.helpers_intake import audit, note, rows

ANN = "ann@example.net"


def events(world: World) -> list[dict]:
    return rows(world.bot().store, "SELECT kind, details, settled_at FROM delivery_events ORDER BY id")


def test_a_failure_is_an_event_of_the_attempt_and_its_report_is_written_when_settled(world: World) -> None:
    world.deliver(note(f"Ann <{ANN}>"))
    world.sink.reject_recipient(ANN)
    bot = world.bot()
    world.run_once()  # processes and delivers; the help mail to Ann is refused for good (550) and settled

    (event,) = events(world)
    assert event["kind"] == "failed" and event["settled_at"] is not None
    assert json.loads(event["details"])["to"] == [ANN]
    purposes = [r["purpose"] for r in rows(bot.store, "SELECT purpose FROM outbox ORDER BY id")]
    assert purposes == ["help", "delivery-failed"]


def test_a_crash_between_the_attempt_and_settling_settles_once_at_the_next_start(world: World) -> None:
    world.deliver(note(f"Ann <{ANN}>"))
    world.sink.stop()
    world.run_once()  # the help mail is queued; the server is away
    world.sink.start()
    world.sink.reject_recipient(ANN)
    world.clock.advance(minutes=10)
    bot = world.bot()
    report = bot.outbox.deliver()  # the attempt is recorded; the process "dies" before settling
    assert report.failed == 1
    (event,) = events(world)
    assert event["settled_at"] is None
    assert [r["purpose"] for r in rows(bot.store, "SELECT purpose FROM outbox")] == ["help"]  # no report yet

    world.restart()
    world.run_once()  # a new process: its first delivery settles what the dead one left
    world.run_once()
    (report_mail,) = world.sent()
    assert report_mail.rcpt_tos == [SECRETARIAT] and ANN in report_mail.message["Subject"]
    (event,) = events(world)
    assert event["settled_at"] is not None
    assert settle(world.bot()) == 0  # nothing twice
    assert [r["purpose"] for r in rows(world.bot().store, "SELECT purpose FROM outbox ORDER BY id")] == [
        "help",
        "delivery-failed",
    ]


def test_an_event_that_cannot_be_settled_is_audited_and_not_retried(world: World) -> None:
    bot = world.bot()
    with bot.store.transaction():  # Mailman's answer for a request that is not in the store (a damaged row)
        outbox_id = bot.outbox.queue_rest(
            purpose="mailman-subscribe",
            call={"action": "subscribe", "list_id": "secir.lists.example.org", "address": ANN},
            request_id=999,
        )
        bot.store.execute(
            "INSERT INTO delivery_events (outbox_id, at, kind, details) VALUES (?, '2026-12-04T09:00:00Z',"
            " 'mailman-answered', ?)",
            (outbox_id, json.dumps({"http": 201, "said": "", "error": "", "gave_up": False})),
        )

    assert settle(bot) == 1
    (entry,) = audit(bot.store, "delivery-event-unsettled")
    assert entry["outbox_id"] == outbox_id and entry["details"]["kind"] == "mailman-answered"
    assert "999" in entry["details"]["error"]
    assert settle(bot) == 0


def v4_store(path: Path) -> None:
    """A store as secirbot with schema 4 left it: a request whose approval request bounced (the old hook
    already told the Secretariat), and its REST subscription answered 201."""
    conn = sqlite3.connect(path)
    for script in _SCHEMA[:4]:
        for statement in _split_sql(script):
            conn.execute(statement)
    at = "2026-11-20T10:00:00Z"
    conn.execute(
        "INSERT INTO requests (id, cctld, requester, requester_key, state, created_at, updated_at, expires_at,"
        " mailman_status) VALUES (1, 'nl', ?, ?, 'approved', ?, ?, ?, 'member')",
        (ANN, ANN, at, at, at),
    )
    outbox = [
        (1, "<a@x>", "mail", "approval-request", '["admin@sidn.nl"]', '["admin@sidn.nl"]', "failed"),
        (2, "<b@x>", "mail", "delivery-failed", f'["{SECRETARIAT}"]', "[]", "sent"),
        (3, "<rest-1@secirbot>", "mailman-rest", "mailman-subscribe", "[]", "[]", "sent"),
    ]
    for oid, mid, kind, purpose, to, failed, state in outbox:
        conn.execute(
            "INSERT INTO outbox (id, message_id, kind, purpose, request_id, envelope_from, recipients, failed,"
            " payload, state, attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, 1, '', ?, ?, x'7b7d', ?,"
            " 1, ?, ?)",
            (oid, mid, kind, purpose, to if state != "failed" else "[]", failed, state, at, at),
        )
    conn.execute("PRAGMA user_version = 4")
    conn.commit()
    conn.close()


def test_migration_from_schema_4_keeps_every_row_and_settles_nothing_again(world: World, tmp_path: Path) -> None:
    path = tmp_path / "v4.sqlite3"
    v4_store(path)
    store = Store(path)
    assert store.version == SCHEMA_VERSION == 5
    assert [(r["id"], r["state"]) for r in store.all("SELECT id, state FROM outbox ORDER BY id")] == [
        (1, "failed"),
        (2, "sent"),
        (3, "sent"),
    ]
    assert store.all("SELECT * FROM delivery_events") == []
    store.close()

    world.settings["store.path"] = str(path)
    world.restart()
    bot = world.bot()
    assert settle(bot) == 0
    assert bot.ledger.request(1).mailman_status == "member"
    assert [r["id"] for r in rows(bot.store, "SELECT id FROM outbox")] == [1, 2, 3]  # no second report
