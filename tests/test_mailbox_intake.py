"""Intake end to end on the real Dovecot: every message processed exactly once and filed afterwards, through
crashes (a real process killed with SIGKILL), a changed UIDVALIDITY, a restarted server, duplicates, junk and
automated mail. What is asserted is what people and the Secretariat see: the mail that went out, the folder a
message ends in, and the rows in the store."""

from __future__ import annotations

from pathlib import Path

import imapclient
import pytest

import secirbot.pipeline
from secirbot.mailbox import PROCESSED_FLAG, Mailbox
from tests.harness import BOT, SECRETARIAT, World
from tests.helpers_intake import (
    KILL_BEFORE_COMMIT,
    KILL_ON_FILE,
    assert_killed,
    audit,
    deep_multipart,
    note,
    rcpts,
    rows,
    run_once_crashing,
    sync_clock,
)

MESSAGES = Path(__file__).parent / "messages"
SEEN = imapclient.SEEN
FILED = PROCESSED_FLAG.encode()


def count_classifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call of the classifier from now on, by the subject of the message classified."""
    calls: list[str] = []
    real = secirbot.pipeline.classify

    def counting(mail, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(mail.subject)
        return real(mail, **kwargs)

    monkeypatch.setattr(secirbot.pipeline, "classify", counting)
    return calls


# --- a crash between the commit and the IMAP move ------------------------------------------------------


def test_a_crash_between_commit_and_move_files_the_message_without_processing_it_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    uid = world.request()  # jan@registry.example asks to join for .nl

    crashed = run_once_crashing(world.write_config(), KILL_ON_FILE)

    assert_killed(crashed)
    store = world.bot().store
    assert [(r["uid"], r["kind"], r["outcome"]) for r in rows(store, "SELECT * FROM messages")] == [
        (uid, "request", "processed")
    ]
    assert world.mailbox.uids("INBOX") == [uid]
    assert SEEN not in world.mailbox.flags()[uid]  # fetched with BODY.PEEK[]: not marked before the commit
    assert world.sink.messages == []  # the replies were queued in the same commit, sent after filing

    sync_clock(world)
    classified = count_classifications(monkeypatch)
    world.run_once()

    assert classified == []  # classified once, in the process that died
    assert sorted(rcpts(world)) == sorted(["jan@registry.example", "admin@sidn.nl", "tech@sidn.nl", SECRETARIAT])
    assert len(rows(store, "SELECT * FROM messages")) == 1
    assert len(rows(store, "SELECT * FROM requests")) == 1
    assert world.mailbox.uids("INBOX") == []
    assert set(world.mailbox.flags("Processed")[1]) == {SEEN, FILED}

    world.sink.clear()
    world.clock.advance(minutes=5)
    world.run_once()
    assert world.sink.messages == []


def test_a_crash_inside_the_transaction_leaves_nothing_behind_and_the_message_is_processed_next_time(
    world: World,
) -> None:
    uid = world.deliver(note("Ann <ann@example.net>"))

    assert_killed(run_once_crashing(world.write_config(), KILL_BEFORE_COMMIT))

    store = world.bot().store
    assert rows(store, "SELECT * FROM messages") == [] and rows(store, "SELECT * FROM outbox") == []
    assert rows(store, "SELECT * FROM audit") == []
    assert world.mailbox.uids("INBOX") == [uid] and world.mailbox.flags()[uid] == ()
    sync_clock(world)
    world.run_once()
    assert rcpts(world) == ["ann@example.net"]
    assert [r["outcome"] for r in rows(store, "SELECT outcome FROM messages")] == ["processed"]
    assert world.mailbox.uids("INBOX") == [] and len(world.mailbox.uids("Processed")) == 1


# --- UIDVALIDITY --------------------------------------------------------------------------------


@pytest.mark.parametrize("renumber", ["change_uidvalidity", "reset_uids"])
def test_a_changed_uidvalidity_does_not_process_a_message_again_but_processes_new_ones(
    world: World, monkeypatch: pytest.MonkeyPatch, renumber: str
) -> None:
    world.deliver(note("Ann <ann@example.net>", subject="Ann's question"))
    assert_killed(run_once_crashing(world.write_config(), KILL_ON_FILE))
    store = world.bot().store
    old = world.mailbox.uidvalidity()

    new = getattr(world.mailbox, renumber)()
    world.deliver(note("Bob <bob@example.org>", subject="Bob's question"))
    assert new != old and world.mailbox.uidvalidity() == new
    sync_clock(world)
    classified = count_classifications(monkeypatch)
    world.run_once()

    assert classified == ["Bob's question"]

    # Ann's message was answered once (the reply queued before the crash); Bob's new one is processed.
    assert sorted(rcpts(world)) == ["ann@example.net", "bob@example.org"]
    seen = rows(store, "SELECT from_addr, uidvalidity, outcome FROM messages ORDER BY id")
    assert seen == [
        {"from_addr": "ann@example.net", "uidvalidity": old, "outcome": "processed"},
        {"from_addr": "ann@example.net", "uidvalidity": new, "outcome": "duplicate"},
        {"from_addr": "bob@example.org", "uidvalidity": new, "outcome": "processed"},
    ]
    assert world.mailbox.uids("INBOX") == [] and len(world.mailbox.uids("Processed")) == 2
    changed = audit(store, "uidvalidity-changed")
    assert [(a["details"]["old"], a["details"]["new"]) for a in changed] == [(old, new)]
    assert len(audit(store, "message-duplicate")) == 1


def test_a_message_without_message_id_is_not_processed_again_after_a_uidvalidity_change(world: World) -> None:
    # A request whose client sent no Message-ID: the duplicate must be caught by its content.
    raw = (
        f"From: Jan Jansen <jan@registry.example>\r\nTo: {BOT}\r\nSubject: subscribe .nl\r\n"
        "Date: Thu, 26 Nov 2026 09:00:00 +0000\r\n\r\nName: Jan Jansen\r\nRole: CSIRT lead\r\n"
    ).encode()
    world.deliver(raw)
    assert_killed(run_once_crashing(world.write_config(), KILL_ON_FILE))
    world.mailbox.change_uidvalidity()
    sync_clock(world)
    world.run_once()

    to_jan = [m.message["Subject"] for m in world.sink.messages if m.rcpt_tos == ["jan@registry.example"]]
    assert len(to_jan) == 1, to_jan  # the acknowledgement only, no "you already asked" refusal
    assert len(rows(world.bot().store, "SELECT * FROM messages WHERE outcome = 'processed'")) == 1


# --- the server goes away midway -------------------------------------------------------------------


def test_dovecot_restarted_mid_run_every_message_processed_and_answered_exactly_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.settings["imap.batch_size"] = 5
    senders = [f"person{i:02d}@example.net" for i in range(30)]
    for sender in senders:
        world.deliver(note(sender))
    dovecot = world.mailbox.server
    real_file = Mailbox.file
    filed_batches: list[list[int]] = []

    def file_after_restart(self: Mailbox, uids: list[int], where: str) -> None:
        if uids:
            filed_batches.append(list(uids))
            if len(filed_batches) == 2:  # the second batch is committed; the server goes before it is filed
                dovecot.restart()
        real_file(self, uids, where)

    monkeypatch.setattr(Mailbox, "file", file_after_restart)
    world.run_once()

    assert len(filed_batches) > 6  # 6 batches, plus the one filed again after reconnecting
    assert sorted(rcpts(world)) == senders  # one help reply each, none twice
    store = world.bot().store
    seen = rows(store, "SELECT from_addr, outcome FROM messages")
    assert sorted(r["from_addr"] for r in seen) == senders
    assert {r["outcome"] for r in seen} == {"processed"}
    assert len(world.mailbox.uids("Processed")) == 30 and world.mailbox.uids("INBOX") == []
    assert len(audit(store, "mail-sent")) == 30


# --- what cannot be read ----------------------------------------------------------------------------


def test_unreadable_messages_go_to_failed_with_the_reason_and_the_loop_goes_on(world: World) -> None:
    world.deliver(note("Ann <ann@example.net>"))
    world.deliver(b"No header section at all, just words.\r\nAnd another line.\r\n")
    world.deliver(deep_multipart())
    world.deliver(note("Bob <bob@example.org>"))

    report = world.run_once()

    assert (report.processed, report.failed) == (4, 2)
    assert sorted(rcpts(world)) == ["ann@example.net", "bob@example.org"]
    store = world.bot().store
    failed = rows(store, "SELECT uid, outcome, reason, raw FROM messages WHERE outcome = 'failed' ORDER BY uid")
    assert [(r["uid"], r["outcome"]) for r in failed] == [(2, "failed"), (3, "failed")]
    assert "no header section" in failed[0]["reason"]
    assert "nesting too deep" in failed[1]["reason"]
    assert failed[0]["raw"].startswith(b"No header section")  # kept for whoever looks into it
    assert [a["details"]["reason"] for a in audit(store, "message-failed")] == [r["reason"] for r in failed]
    failed_folder = world.mailbox.messages("Failed")
    assert [raw[:9] for _, raw in failed_folder] == [b"No header", b"From: Mal"]
    assert len(world.mailbox.uids("Processed")) == 2 and world.mailbox.uids("INBOX") == []
    assert [set(f) for f in world.mailbox.flags("Failed").values()] == [{SEEN, FILED}] * 2


def test_an_oversize_message_goes_to_failed_with_a_reason(world: World) -> None:
    world.settings["imap.max_message_size"] = 4000
    big = note("Zoe <zoe@example.net>", body="Please read my long story.\n" + ("x" * 70 + "\n") * 200)
    world.deliver(big)
    world.deliver(note("Bob <bob@example.org>"))

    world.run_once()

    store = world.bot().store
    failed = rows(store, "SELECT from_addr, outcome, reason FROM messages WHERE outcome = 'failed'")
    assert len(failed) == 1 and failed[0]["from_addr"] == "zoe@example.net"
    assert "imap.max_message_size (4000 bytes)" in failed[0]["reason"]
    assert len(world.mailbox.uids("Failed")) == 1 and len(world.mailbox.uids("Processed")) == 1
    assert world.mailbox.messages("Failed")[0][1] == big.as_bytes(policy=big.policy)  # filed whole
    assert "bob@example.org" in rcpts(world)


# --- automated mail -------------------------------------------------------------------------------

AUTOMATED = sorted(p.name for p in MESSAGES.glob("*.eml") if p.name.startswith(("autoreply-", "bounce-", "report-")))


def test_real_auto_replies_and_bounces_get_no_answer(world: World) -> None:
    assert len(AUTOMATED) >= 30
    for name in AUTOMATED:
        world.deliver((MESSAGES / name).read_bytes())

    report = world.run_once()

    assert report.processed == len(AUTOMATED) and report.failed == 0
    assert world.sink.messages == []
    store = world.bot().store
    assert rows(store, "SELECT * FROM outbox") == []
    kinds = rows(store, "SELECT kind, outcome FROM messages")
    assert len(kinds) == len(AUTOMATED)
    assert {(r["kind"], r["outcome"]) for r in kinds} == {("automated", "processed")}
    assert len(world.mailbox.uids("Processed")) == len(AUTOMATED)


def test_the_bots_own_mail_coming_back_gets_no_answer(world: World) -> None:
    world.deliver(note("Ann <ann@example.net>"))
    world.run_once()
    (reply,) = world.sent()
    world.deliver(reply.data)  # e.g. a forwarder or a misconfigured alias sends it back to us
    world.clock.advance(days=2)  # past any once-a-day limit

    world.run_once()

    assert world.sink.messages == []
    last = rows(world.bot().store, "SELECT kind, from_addr FROM messages ORDER BY id DESC LIMIT 1")
    assert last == [{"kind": "automated", "from_addr": BOT}]


# --- humans who did not ask for anything -------------------------------------------------------------


def test_a_human_non_request_gets_one_help_reply_a_day(world: World) -> None:
    first = note("Pat <pat@example.net>")
    world.deliver(first)
    world.run_once()
    (help_reply,) = world.sent()
    assert help_reply.rcpt_tos == ["pat@example.net"] and help_reply.mail_from == BOT
    msg = help_reply.message
    assert msg["In-Reply-To"] == first["Message-ID"]
    assert msg["Auto-Submitted"] == "auto-replied"
    assert "subscribe .nl" in msg.get_content()

    world.clock.advance(hours=2)
    world.deliver(note("Pat <Pat@Example.NET>", subject="Me again"))  # same person, other spelling
    world.deliver(note("Kim <kim@example.org>"))  # the limit is per sender
    world.run_once()
    assert rcpts(world) == ["kim@example.org"]
    world.sink.clear()

    world.clock.advance(days=1, minutes=1)
    world.deliver(note("Pat <pat@example.net>", subject="Third try"))
    world.run_once()
    assert rcpts(world) == ["pat@example.net"]

    store = world.bot().store
    details = rows(store, "SELECT from_addr, kind, detail FROM messages ORDER BY id")
    assert [(r["from_addr"].lower(), r["kind"], r["detail"]) for r in details] == [
        ("pat@example.net", "other", "help-sent"),
        ("pat@example.net", "other", "help-suppressed"),
        ("kim@example.org", "other", "help-sent"),
        ("pat@example.net", "other", "help-sent"),
    ]
    assert [a["details"]["to"].lower() for a in audit(store, "reply-suppressed")] == ["pat@example.net"]


# --- duplicates -----------------------------------------------------------------------------------


def test_the_same_message_delivered_twice_is_processed_once(world: World) -> None:
    original = note("Ann <ann@example.net>")
    first_uid = world.deliver(original)
    second_uid = world.deliver(original)  # e.g. a retrying MTA: same Message-ID and body, another UID
    world.run_once()
    world.clock.advance(days=2)  # a later copy is not answered either, even past the daily limit
    third_uid = world.deliver(original)
    world.run_once()

    assert rcpts(world) == ["ann@example.net"]
    store = world.bot().store
    seen = rows(store, "SELECT uid, outcome, detail FROM messages ORDER BY uid")
    assert [(r["uid"], r["outcome"]) for r in seen] == [
        (first_uid, "processed"),
        (second_uid, "duplicate"),
        (third_uid, "duplicate"),
    ]
    first_row = rows(store, "SELECT id FROM messages WHERE uid = ?", (first_uid,))[0]["id"]
    assert {r["detail"] for r in seen[1:]} == {f"of message {first_row}"}
    assert [a["details"]["of"] for a in audit(store, "message-duplicate")] == [first_row, first_row]
    assert len(world.mailbox.uids("Processed")) == 3 and world.mailbox.uids("INBOX") == []


def test_a_reused_message_id_with_another_body_is_not_taken_for_a_duplicate(world: World) -> None:
    for msg in (note("Ann <ann@example.net>"), note("Bob <bob@example.org>", body="Something else.\n")):
        msg.replace_header("Message-ID", "<same@example.net>")
        world.deliver(msg)

    world.run_once()

    assert sorted(rcpts(world)) == ["ann@example.net", "bob@example.org"]
    outcomes = rows(world.bot().store, "SELECT outcome FROM messages")
    assert [r["outcome"] for r in outcomes] == ["processed", "processed"]


# --- folders and flags ----------------------------------------------------------------------------


def test_processed_and_failed_folders_are_created_when_missing(world: World) -> None:
    world.settings.update({"imap.processed_folder": "Done", "imap.failed_folder": "Quarantine"})
    assert world.mailbox.folders() == ["INBOX"]
    world.deliver(note("Ann <ann@example.net>"))
    world.deliver(b"garbage without headers\r\n")

    world.run_once()

    assert set(world.mailbox.folders()) == {"INBOX", "Done", "Quarantine", "secirbot-lease"}
    assert len(world.mailbox.uids("Done")) == 1 and len(world.mailbox.uids("Quarantine")) == 1
    assert world.mailbox.uids("INBOX") == []


def test_filed_messages_are_seen_and_flagged_processed(world: World) -> None:
    world.mailbox.create_folder("Processed")  # an existing folder is used as it is
    world.deliver(note("Ann <ann@example.net>"))
    world.deliver(b"\r\n")  # empty

    world.run_once()

    assert [set(f) for f in world.mailbox.flags("Processed").values()] == [{SEEN, FILED}]
    assert [set(f) for f in world.mailbox.flags("Failed").values()] == [{SEEN, FILED}]
    assert rows(world.bot().store, "SELECT reason FROM messages WHERE outcome = 'failed'") == [
        {"reason": "empty message"}
    ]


# --- the audit trail ------------------------------------------------------------------------------


def test_every_state_change_of_a_message_and_its_reply_is_audited(world: World) -> None:
    world.deliver(note("Ann <ann@example.net>"))
    world.run_once()

    store = world.bot().store
    message_row = rows(store, "SELECT id FROM messages")[0]["id"]
    outbox = rows(store, "SELECT id, message_id FROM outbox")[0]
    trail = [(a["action"], a["message_row"], a["outbox_id"]) for a in audit(store)]
    assert trail == [
        ("mail-queued", message_row, outbox["id"]),
        ("message-processed", message_row, None),
        ("mail-sent", None, outbox["id"]),
    ]
    queued, processed, _sent = audit(store)
    sent_id = world.sink.messages[0].message["Message-ID"].strip()
    assert queued["details"]["message_id"] == outbox["message_id"] == sent_id
    assert processed["details"]["kind"] == "other" and processed["details"]["detail"] == "help-sent"


def test_a_message_that_fails_inside_the_bot_is_rolled_back_quarantined_and_reported(world: World) -> None:
    """Our fault, not the sender's (here: a template the Secretariat broke): nothing half-done stays in the
    store, the message goes to Failed with the reason, and the Secretariat is told, so a request or an
    approval never vanishes silently. The next message is handled as usual."""
    templates = world.root / "templates"
    templates.mkdir()
    for source in (Path(__file__).parent.parent / "templates").iterdir():
        (templates / source.name).write_bytes(source.read_bytes())
    (templates / "help.txt").write_text("Subject: broken\n\n{{ no_such_field }}\n")
    world.settings["templates"] = str(templates)
    world.deliver(note("Bob <bob@example.org>"))
    world.request()

    report = world.run_once()

    assert (report.processed, report.failed) == (2, 1)
    store = world.bot().store
    (failed,) = rows(store, "SELECT from_addr, kind, reason FROM messages WHERE outcome = 'failed'")
    assert (failed["from_addr"], failed["kind"]) == ("bob@example.org", "other")
    assert "internal error: TemplateError" in failed["reason"] and "no_such_field" in failed["reason"]
    assert rows(store, "SELECT COUNT(*) AS n FROM outbox WHERE purpose = 'help'")[0]["n"] == 0  # rolled back
    sent = world.sent()
    assert "jan@registry.example" in [r for m in sent for r in m.rcpt_tos]  # the request went on as usual
    (report_mail,) = [
        m for m in sent if m.rcpt_tos == [SECRETARIAT] and m.message["Subject"].startswith("A message to")
    ]
    expected = f"A message to {BOT} could not be handled: A question about the list"
    assert report_mail.message["Subject"].strip() == expected
    text = report_mail.message.get_content()
    assert "From:        bob@example.org" in text and "no_such_field" in text
    assert len(world.mailbox.uids("Failed")) == 1 and len(world.mailbox.uids("Processed")) == 1


def test_a_request_whose_next_step_fails_waits_and_the_secretariat_is_told_once(world: World) -> None:
    templates = world.root / "templates"
    templates.mkdir()
    for source in (Path(__file__).parent.parent / "templates").iterdir():
        (templates / source.name).write_bytes(source.read_bytes())
    (templates / "request_received.txt").write_text("Subject: broken\n\n{{ request.no_such_field }}\n")
    world.settings["templates"] = str(templates)
    world.request()
    report = world.run_once()
    assert (report.processed, report.failed) == (1, 0)  # the message itself is handled: nothing lost
    sent = world.sent()
    assert [(m.rcpt_tos, m.message["Subject"]) for m in sent] == [
        ([SECRETARIAT], "Request #1 could not be taken further: jan@registry.example for .nl")
    ]
    assert "no_such_field" in sent[0].message.get_content()
    store = world.bot().store
    assert rows(store, "SELECT state, lookup_attempts FROM requests")[0]["state"] == "resolving"
    world.clock.advance(hours=2)
    world.run_once()
    assert world.sent() == []  # retried, still failing: told once
    (templates / "request_received.txt").write_bytes(
        (Path(__file__).parent.parent / "templates" / "request_received.txt").read_bytes()
    )
    world.restart()
    world.clock.advance(hours=2)
    world.run_once()
    assert "jan@registry.example" in [r for m in world.sent() for r in m.rcpt_tos]  # fixed: it goes on
    assert rows(world.bot().store, "SELECT state FROM requests")[0]["state"] == "pending"
