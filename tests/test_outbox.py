"""The outbox against a real SMTP server (the aiosmtpd sink): queued in the commit, sent after it, retried with
backoff on 4xx and dropped connections, failed and reported on 5xx, never sent twice; a crash between the
server's 250 and our commit re-sends the very same bytes and nothing else."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from secirbot.store import iso
from tests.harness import BOT, SECRETARIAT, World, reply_to
from tests.helpers_intake import (
    KILL_AFTER_SMTP_250,
    assert_killed,
    audit,
    note,
    rcpts,
    rows,
    run_once_crashing,
    sync_clock,
)

ANN = "ann@example.net"
BOB = "bob@example.org"
MAILMAN_REQUEST = "secir-request@lists.example.org"


def outbox(world: World) -> list[dict]:
    return rows(world.bot().store, "SELECT * FROM outbox ORDER BY id")


def test_a_451_is_retried_with_growing_backoff_and_delivered_once_with_the_first_message_id(world: World) -> None:
    world.deliver(note(f"Ann <{ANN}>"))
    world.sink.fail_next(2)  # 451 4.3.0 twice, then accept

    world.run_once()
    first_try = world.clock()
    (row,) = outbox(world)
    composed_id, payload = row["message_id"], row["payload"]
    assert (row["state"], row["attempts"]) == ("queued", 1)
    assert "451" in row["last_error"]
    assert row["next_attempt_at"] == iso(first_try + timedelta(minutes=1))
    assert world.sink.messages == [] and world.sink.attempts == 1

    world.clock.advance(seconds=30)  # not due yet: no attempt
    world.run_once()
    assert world.sink.attempts == 1

    second_try = world.clock.advance(seconds=31)
    world.run_once()
    (row,) = outbox(world)
    assert (row["state"], row["attempts"]) == ("queued", 2)
    assert row["next_attempt_at"] == iso(second_try + timedelta(minutes=2))  # doubled
    assert world.sink.attempts == 2

    world.clock.advance(minutes=2)
    world.run_once()
    world.clock.advance(hours=5)
    world.run_once()

    (sent,) = world.sink.messages
    assert sent.rcpt_tos == [ANN]
    assert sent.message["Message-ID"].strip() == composed_id
    assert sent.data == payload  # the bytes composed at commit time, not a re-rendering
    (row,) = outbox(world)
    assert (row["state"], row["attempts"], row["message_id"]) == ("sent", 3, composed_id)
    store = world.bot().store
    assert [d["details"]["next_attempt_at"] for d in audit(store, "delivery-deferred")] == [
        iso(first_try + timedelta(minutes=1)),
        iso(second_try + timedelta(minutes=2)),
    ]
    assert [a["details"]["to"] for a in audit(store, "mail-sent")] == [[ANN]]
    assert audit(store, "mail-queued")[0]["details"]["message_id"] == composed_id


def test_a_connection_dropped_at_data_is_retried_and_does_not_hold_back_other_mail(world: World) -> None:
    world.deliver(note(f"Ann <{ANN}>"))
    world.deliver(note(f"Bob <{BOB}>"))
    world.sink.drop_connections(1)

    world.run_once()
    assert rcpts(world) == [BOB]  # a fresh session for the next message
    ann_row = outbox(world)[0]
    assert (ann_row["state"], ann_row["attempts"]) == ("queued", 1)
    assert "connection" in ann_row["last_error"].lower()

    world.clock.advance(minutes=1, seconds=1)
    world.run_once()
    world.clock.advance(hours=1)
    world.run_once()

    assert rcpts(world) == [BOB, ANN]
    assert [(r["state"], r["attempts"]) for r in outbox(world)] == [("sent", 2), ("sent", 1)]


@pytest.mark.parametrize(
    ("refuse", "code"),
    [
        (lambda sink: sink.reject_recipient(ANN), "550 5.1.1"),
        (lambda sink: sink.fail_next(1, "554 5.7.1 rejected by policy"), "554 5.7.1"),
    ],
    ids=["550-at-rcpt", "554-at-data"],
)
def test_a_5xx_fails_the_mail_at_once_and_reports_it_to_the_secretariat(world: World, refuse, code: str) -> None:
    world.deliver(note(f"Ann <{ANN}>"))
    refuse(world.sink)

    world.run_once()
    world.clock.advance(days=1)
    world.run_once()

    help_row, report_row = outbox(world)
    assert (help_row["state"], help_row["attempts"], json.loads(help_row["failed"])) == ("failed", 1, [ANN])
    assert code in help_row["last_error"]
    assert report_row["state"] == "sent" and report_row["purpose"] == "delivery-failed"
    (report,) = world.sink.messages  # nothing to Ann, ever; one report
    assert report.rcpt_tos == [SECRETARIAT]
    assert "Undeliverable" in report.message["Subject"] and ANN in report.message["Subject"]
    body = report.message.get_content()
    assert code in body and help_row["message_id"] in body
    assert [a["details"]["to"] for a in audit(world.bot().store, "delivery-failed")] == [[ANN]]


def test_a_failed_report_to_the_secretariat_is_not_reported_again(world: World) -> None:
    world.deliver(note(f"Ann <{ANN}>"))
    world.sink.reject_recipient(ANN)
    world.sink.reject_recipient(SECRETARIAT)

    world.run_once()
    world.clock.advance(days=1)
    world.run_once()

    assert [(r["purpose"], r["state"], json.loads(r["failed"])) for r in outbox(world)] == [
        ("help", "failed", [ANN]),
        ("delivery-failed", "failed", [SECRETARIAT]),
    ]
    assert world.sink.messages == []
    assert len(audit(world.bot().store, "delivery-failed")) == 2


def test_an_unreachable_server_defers_and_after_give_up_after_the_secretariat_is_told(world: World) -> None:
    world.deliver(note(f"Ann <{ANN}>"))
    world.sink.stop()
    world.run_once()
    (row,) = outbox(world)
    assert (row["state"], row["attempts"]) == ("queued", 1)
    assert "127.0.0.1" in row["last_error"]

    world.clock.advance(days=3, minutes=1)  # rules: give_up_after 3d
    world.run_once()
    help_row, report_row = outbox(world)
    assert (help_row["state"], json.loads(help_row["failed"])) == ("failed", [ANN])
    assert "gave up" in help_row["last_error"]
    assert report_row["state"] == "queued"  # the report itself waits for the server

    world.sink.start()
    world.clock.advance(minutes=2)
    world.run_once()
    (report,) = world.sink.messages
    assert report.rcpt_tos == [SECRETARIAT] and ANN in report.message["Subject"]
    assert "gave up" in report.message.get_content()


def test_a_crash_between_the_smtp_250_and_the_commit_resends_the_same_message_and_nothing_else(world: World) -> None:
    world.deliver(note(f"Ann <{ANN}>"))
    world.deliver(note(f"Bob <{BOB}>"))

    assert_killed(run_once_crashing(world.write_config(), KILL_AFTER_SMTP_250))
    (first,) = world.sink.messages  # the server took Ann's reply; we died before writing that down
    assert first.rcpt_tos == [ANN]
    assert [r["state"] for r in outbox(world)] == ["queued", "queued"]

    sync_clock(world)
    world.run_once()
    world.clock.advance(hours=1)
    world.run_once()

    again, to_bob = world.sink.messages[1:]
    assert again.rcpt_tos == [ANN] and to_bob.rcpt_tos == [BOB]
    assert again.data == first.data  # byte for byte: same Message-ID, same Date, same body
    assert again.message["Message-ID"] == first.message["Message-ID"]
    assert len(world.sink.messages) == 3
    assert [(r["state"], r["attempts"]) for r in outbox(world)] == [("sent", 1), ("sent", 1)]
    assert len(rows(world.bot().store, "SELECT * FROM messages")) == 2  # the mail was not processed again
    assert world.mailbox.uids("INBOX") == []


def test_every_mail_the_bot_sends_is_marked_automatic_and_has_its_own_message_id(world: World) -> None:
    world.request()  # acknowledgement, approval requests, the Secretariat's copy
    world.deliver(note(f"Ann <{ANN}>"))  # help
    world.deliver(note(f"Bob <{BOB}>"))
    world.sink.reject_recipient(BOB)  # -> "delivery failed" report
    world.run_once()
    approval = world.approval_requests(world.sink.messages)["admin@sidn.nl"]
    world.deliver(reply_to(approval, "Roelof Meijer <admin@sidn.nl>", "APPROVE"))
    world.clock.advance(hours=1)
    world.run_once()  # the Mailman command and the decision notices

    sent = world.sink.messages
    to = {r.lower() for m in sent for r in m.rcpt_tos}
    assert {"jan@registry.example", "admin@sidn.nl", "tech@sidn.nl", SECRETARIAT, ANN, MAILMAN_REQUEST} <= to
    assert any(m.rcpt_tos == [SECRETARIAT] and "Undeliverable" in m.message["Subject"] for m in sent)
    queued_ids = {r["message_id"] for r in outbox(world)}
    ids = [m.message["Message-ID"].strip() for m in sent]
    assert len(set(ids)) == len(ids) and set(ids) <= queued_ids
    for captured in sent:
        msg = captured.message
        assert msg["Auto-Submitted"] in ("auto-generated", "auto-replied"), captured.rcpt_tos
        assert msg["Message-ID"].strip().endswith("@lists.example.org>"), captured.rcpt_tos
        assert captured.mail_from == BOT
        assert msg["X-Auto-Response-Suppress"] == "OOF, AutoReply", captured.rcpt_tos


def test_the_mailman_command_also_suppresses_auto_responses(world: World) -> None:
    world.request()
    world.run_once()
    approval = world.approval_requests(world.sent())["admin@sidn.nl"]
    world.deliver(reply_to(approval, "Roelof Meijer <admin@sidn.nl>", "APPROVE"))
    world.run_once()

    (command,) = world.sent_to(MAILMAN_REQUEST, world.sent())
    assert command.message["Auto-Submitted"] == "auto-generated"
    assert command.message["X-Auto-Response-Suppress"] == "OOF, AutoReply"
