"""The roster (secirbot/roster.py) and taking people off the list (secirbot/membership.py), end to end on the
real Dovecot, SMTP sink and IANA stand-ins, and on the real Mailman 3 for the REST dialect: who is a member,
`secirbot members`, taking over an existing list with `members import`, a member's own `leave`, and
`secirbot remove`. Also the schema migration from version 3 with real rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from secirbot import cli
from secirbot.cli import EXIT_OK, EXIT_STORE
from secirbot.sandbox.mailman import Mailman3
from secirbot.store import _SCHEMA, SCHEMA_VERSION, Store, _split_sql
from tests.flow import ADMIN_FROM, NL_ADMIN, REQUESTER, by_rcpt, flat, open_request, subject
from tests.harness import BOT, LIST, SECRETARIAT, World, new_message, reply_to
from tests.test_mailman3 import LIST_ID, PASSWORD_ENV, bridge, use_rest  # noqa: F401  (bridge: a fixture)

OUR_ID = "mx.lists.example.org"  # the harness's authentication.authserv_id
SIGNED = {"Authentication_Results": f"{OUR_ID}; dmarc=pass header.from=registry.example"}


def members_json(world: World, capsys: pytest.CaptureFixture[str], *more: str) -> list[dict]:
    capsys.readouterr()
    assert cli.main(["--config", str(world.config_file), "members", "--json", *more]) == EXIT_OK
    return json.loads(capsys.readouterr().out)


def admit(world: World) -> None:
    """REQUESTER asks for .nl and the .nl administrative contact approves; what went out is cleared."""
    opened = open_request(world)
    world.deliver(reply_to(opened.approvals[NL_ADMIN], ADMIN_FROM, "APPROVE"))
    world.run_once()
    world.sent()


def test_an_approved_requester_is_on_the_roster_with_who_approved(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    admit(world)
    [row] = members_json(world, capsys)
    assert (row["address"], row["cctld"], row["state"], row["source"]) == (REQUESTER, "nl", "member", "admitted")
    assert row["approved_by"] == NL_ADMIN and row["since"] and row["request_id"] == 1
    assert members_json(world, capsys, "--cctld", ".fi") == []
    capsys.readouterr()
    assert cli.main(["--config", str(world.config_file), "members"]) == EXIT_OK
    assert REQUESTER in capsys.readouterr().out


# --- leaving ------------------------------------------------------------------------------------------


def leave_mail(world: World, *, signed: bool, sender: str = f"Jan Jansen <{REQUESTER}>", subject_line: str = "leave"):
    return new_message(sender, BOT, subject_line, "Thanks for everything.\n", **(SIGNED if signed else {}))


def test_leave_by_mail_email_dialect_asks_the_secretariat_then_mailmans_notice_confirms(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    admit(world)
    world.deliver(leave_mail(world, signed=True))
    world.run_once()
    sent = by_rcpt(world.sent())
    [to_secretariat] = sent[SECRETARIAT]
    assert subject(to_secretariat) == f"Please remove: {REQUESTER} (nl) from {LIST}"
    # Mailman's e-mail commands cannot remove another address: the Secretariat gets the exact command.
    assert f"mailman delmembers -l {LIST} -m {REQUESTER}" in flat(to_secretariat)
    [to_member] = sent[REQUESTER]
    assert subject(to_member) == f"Your removal from {LIST}"
    assert [m["state"] for m in members_json(world, capsys)] == ["leaving"]
    assert "secir-request@lists.example.org" not in sent  # no command mail that Mailman would refuse

    notice = new_message(
        "postmaster@example.org",
        "secir-owner@lists.example.org",
        "Secir unsubscription notification",
        f"Jan Jansen <{REQUESTER}> has been removed from Secir.\n",
        X_Mailman_Version="3.3.10",
        List_Id="Secir <secir.lists.example.org>",
    )
    world.deliver(notice)
    world.run_once()
    sent = by_rcpt(world.sent())
    assert [subject(m) for m in sent[SECRETARIAT]] == [f"Removed: {REQUESTER} (nl) from {LIST}"]
    assert [subject(m) for m in sent[REQUESTER]] == [f"You are no longer on {LIST}"]
    [row] = members_json(world, capsys, "--all")
    assert (row["state"], row["reason"]) == ("removed", "asked to leave")
    assert members_json(world, capsys) == []
    # Off the list, the seat is free and the person may ask again.
    world.request(sender=f"Jan Jansen <{REQUESTER}>")
    world.run_once()
    assert any(subject(m).startswith("Approval needed:") for m in world.sent())


def test_an_unverified_leave_removes_nobody_and_tells_the_real_member(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    admit(world)
    world.deliver(leave_mail(world, signed=False, subject_line="Unsubscribe"))
    world.run_once()
    sent = by_rcpt(world.sent())
    assert [subject(m) for m in sent[SECRETARIAT]] == [f"Unverified leave request: {REQUESTER}"]
    assert "secirbot remove" in flat(sent[SECRETARIAT][0])
    assert [subject(m) for m in sent[REQUESTER]] == [f"Your request to leave {LIST}"]
    assert "nothing has been removed" in flat(sent[REQUESTER][0])
    assert [m["state"] for m in members_json(world, capsys)] == ["member"]
    # A flood of forged leave mails: the member and the Secretariat hear of it once a day.
    for _ in range(3):
        world.deliver(leave_mail(world, signed=False))
    world.run_once()
    assert world.sent() == []
    world.clock.advance(days=1, minutes=1)
    world.deliver(leave_mail(world, signed=False))
    world.run_once()
    assert sorted(m.rcpt_tos[0] for m in world.sent()) == sorted([REQUESTER, SECRETARIAT])


def test_leave_from_someone_who_is_not_a_member_says_so(world: World) -> None:
    world.deliver(leave_mail(world, signed=True, sender="Piet <piet@registry.example>"))
    world.run_once()
    [reply] = world.sent()
    assert reply.rcpt_tos == ["piet@registry.example"]
    assert subject(reply) == f"piet@registry.example is not on {LIST}"


def test_unsubscribe_in_a_sentence_is_still_not_a_leave_and_a_reply_subject_is_not_either(world: World) -> None:
    admit(world)
    world.deliver(new_message(f"Jan <{REQUESTER}>", BOT, "Re: leave", "see below\n", **SIGNED))
    world.deliver(new_message(f"Jan <{REQUESTER}>", BOT, "question", "How do I unsubscribe a colleague?\n", **SIGNED))
    world.run_once()
    assert SECRETARIAT not in by_rcpt(world.sent())
    rows = world.bot().store.all("SELECT kind FROM messages WHERE kind = 'membership'")
    assert rows == []


def test_a_forged_unsubscription_notice_does_not_take_a_member_off_the_roster(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    admit(world)
    world.deliver(
        new_message(
            "postmaster@example.org",
            "secir-owner@lists.example.org",
            "Secir unsubscription notification",
            f"{REQUESTER} has been removed from Secir.\n",
            X_Mailman_Version="3.3.10",
        )
    )
    world.run_once()
    [notice] = by_rcpt(world.sent())[SECRETARIAT]
    assert subject(notice) == f"Mailman removed: {REQUESTER} (nl) from {LIST}"
    assert [m["state"] for m in members_json(world, capsys)] == ["member"]


# --- secirbot remove ------------------------------------------------------------------------------------


def test_remove_by_the_secretariat_email_dialect_then_done(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    admit(world)
    config = str(world.config_file)
    assert cli.main(["--config", config, "remove", REQUESTER]) == 1  # no reason: refused
    assert "--reason is required" in capsys.readouterr().err
    assert cli.main(["--config", config, "remove", REQUESTER, "--reason", "left the registry", "--by", "ana"]) == 0
    sent = by_rcpt(world.sent())
    assert subject(sent[SECRETARIAT][0]) == f"Please remove: {REQUESTER} (nl) from {LIST}"
    assert "The Secretariat asked" in flat(sent[SECRETARIAT][0])
    assert "left the registry" in flat(sent[REQUESTER][0])
    assert cli.main(["--config", config, "remove", REQUESTER, "--done", "--by", "ana"]) == 0
    sent = by_rcpt(world.sent())
    assert [subject(m) for m in sent[REQUESTER]] == [f"You are no longer on {LIST}"]
    [row] = members_json(world, capsys, "--all")
    assert (row["state"], row["removed_by"], row["reason"]) == ("removed", "cli:ana", "left the registry")
    actions = [r["action"] for r in world.bot().store.all("SELECT action FROM audit ORDER BY id")]
    assert actions.count("member-leaving") == 1 and actions.count("member-removed") == 1
    assert cli.main(["--config", config, "remove", REQUESTER, "--reason", "again"]) == 1
    assert "is not on the roster" in capsys.readouterr().err


def test_remove_over_rest_takes_the_member_out_of_the_real_mailman(
    world: World,
    mailman3: Mailman3,
    bridge,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mailman3.create_list(LIST, "open", owners=[SECRETARIAT])
    use_rest(world, mailman3, dialect="mailman3-rest")
    admit(world)
    assert mailman3.roster(LIST_ID) == [REQUESTER]
    monkeypatch.setenv(PASSWORD_ENV, mailman3.admin_pass)
    config = str(world.config_file)
    assert cli.main(["--config", config, "remove", REQUESTER, "--reason", "changed jobs", "--by", "ana"]) == 0
    assert mailman3.roster(LIST_ID) == []
    sent = by_rcpt(bridge.relay())
    assert [subject(m) for m in sent[SECRETARIAT]] == [f"Removed: {REQUESTER} (nl) from {LIST}"]
    assert "HTTP 204" in flat(sent[SECRETARIAT][0])
    assert [subject(m) for m in sent[REQUESTER]] == [f"You are no longer on {LIST}"]
    [row] = members_json(world, capsys, "--all")
    assert (row["state"], row["removed_by"]) == ("removed", "cli:ana")


# --- taking over an existing list -----------------------------------------------------------------------


def test_members_import_from_csv_counts_for_seats_and_lists_what_it_cannot_place(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = tmp_path / "members.csv"
    csv_file.write_text(
        "address,cctld,name\n"
        "a@sidn.nl,nl,Anna\n"
        "b@example.com,.nl,\n"  # the ccTLD given: taken as written
        "c@sidn.nl,,\n"  # inferred from the address's own domain
        "d@gmail.com,,\n"  # cannot be inferred: listed, not guessed
        "e@x.example,com,\n",  # not a ccTLD
        encoding="utf-8",
    )
    world.bot()
    config = str(world.config_file)
    assert cli.main(["--config", config, "members", "import", "--csv", str(csv_file), "--dry-run"]) == 0
    assert "would import 3 member(s)" in capsys.readouterr().out
    assert members_json(world, capsys) == []
    assert cli.main(["--config", config, "members", "import", "--csv", str(csv_file), "--by", "ana"]) == 0
    out = capsys.readouterr().out
    assert "imported 3 member(s)" in out and "d@gmail.com: no ccTLD given" in out and "e@x.example" in out
    rows = members_json(world, capsys, "--cctld", "nl")
    assert sorted(r["address"] for r in rows) == ["a@sidn.nl", "b@example.com", "c@sidn.nl"]
    assert {(r["state"], r["source"]) for r in rows} == {("member", "imported")}
    assert {r["approved_by"] for r in rows} == {"imported from CSV members.csv"}
    # Three seats for .nl are taken from the first day: a fourth person is refused.
    world.request(sender=f"Jan <{REQUESTER}>")
    world.run_once()
    [refusal] = world.sent()
    assert refusal.rcpt_tos == [REQUESTER] and "at most 3 members" in flat(refusal)
    # Importing again adds nobody.
    assert cli.main(["--config", config, "members", "import", "--csv", str(csv_file)]) == 0
    assert "imported 0 member(s) from CSV members.csv; 3 already on the roster" in capsys.readouterr().out


def test_members_import_from_the_real_mailman(
    world: World, mailman3: Mailman3, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mailman3.create_list(LIST, "open", owners=[SECRETARIAT])
    mailman3.subscribe(LIST_ID, "sec@sidn.nl")
    mailman3.subscribe(LIST_ID, "someone@gmail.com")
    use_rest(world, mailman3)
    world.bot()
    monkeypatch.setenv(PASSWORD_ENV, mailman3.admin_pass)
    assert cli.main(["--config", str(world.config_file), "members", "import", "--from-mailman"]) == 0
    out = capsys.readouterr().out
    assert f"imported 1 member(s) from Mailman {LIST}" in out
    assert "someone@gmail.com: no ccTLD given" in out
    assert [(r["address"], r["cctld"]) for r in members_json(world, capsys)] == [("sec@sidn.nl", "nl")]


# --- the schema -----------------------------------------------------------------------------------------


def v3_store(path: Path) -> None:
    """A store as secirbot with schema 3 left it, with one approved and one denied request."""
    conn = sqlite3.connect(path)
    for script in _SCHEMA[:3]:
        for statement in _split_sql(script):
            conn.execute(statement)
    rows = [
        (1, "nl", REQUESTER, "Jan", "approved", NL_ADMIN, "2026-11-20T10:00:00Z"),
        (2, "nl", "eve@registry.example", None, "denied", NL_ADMIN, "2026-11-21T10:00:00Z"),
    ]
    for rid, cctld, requester, name, state, by, at in rows:
        conn.execute(
            "INSERT INTO requests (id, cctld, requester, requester_key, requester_name, state, created_at,"
            " updated_at, expires_at, decided_by, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rid, cctld, requester, requester.lower(), name, state, at, at, at, by, at),
        )
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()


def test_migration_from_schema_3_puts_approved_requesters_on_the_roster(tmp_path: Path) -> None:
    path = tmp_path / "secirbot.sqlite3"
    v3_store(path)
    store = Store(path)
    assert store.version == SCHEMA_VERSION == 5
    rows = [dict(r) for r in store.all("SELECT address, cctld, state, source, since, approved_by FROM members")]
    assert rows == [
        {
            "address": REQUESTER,
            "cctld": "nl",
            "state": "member",
            "source": "admitted",
            "since": "2026-11-20T10:00:00Z",
            "approved_by": NL_ADMIN,
        }
    ]


def test_a_read_only_command_on_an_older_store_says_to_upgrade_it(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.sqlite3"
    v3_store(path)
    world.settings["store.path"] = str(path)
    world.write_config()
    assert cli.main(["--config", str(world.config_file), "members"]) == EXIT_STORE
    err = capsys.readouterr().err
    assert "schema version 3" in err and "secirbot run --once" in err


# --- replacement ----------------------------------------------------------------------------------------


def import_three(world: World, tmp_path: Path) -> None:
    csv_file = tmp_path / "members.csv"
    csv_file.write_text("a@sidn.nl,nl\nb@sidn.nl,nl,Bea\nc@sidn.nl,nl\n", encoding="utf-8")
    world.bot()
    assert cli.main(["--config", str(world.config_file), "members", "import", "--csv", str(csv_file)]) == 0


def test_a_replacement_passes_the_seat_cap_and_approval_takes_the_replaced_off(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import_three(world, tmp_path)
    opened = open_request(world, text="Name: Jan Jansen\nreplacing b@sidn.nl\nBea moved to another team.\n")
    approval = opened.approvals[NL_ADMIN]
    assert "Replaces: b@sidn.nl, a member for .nl now. If you APPROVE, b@sidn.nl is taken off the list." in flat(
        approval
    )
    world.deliver(reply_to(approval, ADMIN_FROM, "APPROVE"))
    world.run_once()
    sent = by_rcpt(world.sent())
    assert any(subject(m).startswith("Approved:") for m in sent[REQUESTER])
    [to_bea] = sent["b@sidn.nl"]
    assert subject(to_bea) == f"Your removal from {LIST}" and f"replaced by {REQUESTER} (request #1)" in flat(to_bea)
    assert f"Please remove: b@sidn.nl (nl) from {LIST}" in [subject(m) for m in sent[SECRETARIAT]]
    states = {m["address"]: m["state"] for m in members_json(world, capsys, "--all")}
    assert states == {"a@sidn.nl": "member", "b@sidn.nl": "leaving", "c@sidn.nl": "member", REQUESTER: "member"}


def test_replacing_someone_who_is_not_a_member_for_that_cctld_is_refused(world: World, tmp_path: Path) -> None:
    import_three(world, tmp_path)
    world.request(sender=f"Jan <{REQUESTER}>", body="replacing nobody@sidn.nl\n")
    world.run_once()
    [refusal] = world.sent()
    assert refusal.rcpt_tos == [REQUESTER] and "nobody@sidn.nl is not a member of the list" in flat(refusal)
    assert world.bot().store.count("SELECT COUNT(*) FROM requests") == 0


def test_members_added_or_removed_in_mailman_behind_the_bots_back_show_up(
    world: World,
    mailman3: Mailman3,
    bridge,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mailman3.create_list(LIST, "open", owners=[SECRETARIAT])
    use_rest(world, mailman3, dialect="mailman3-rest")
    monkeypatch.setenv(PASSWORD_ENV, mailman3.admin_pass)
    admit(world)
    assert mailman3.roster(LIST_ID) == [REQUESTER]
    mailman3.subscribe(LIST_ID, "walked-in@gmail.com")  # through Postorius, say: never vetted here
    mailman3.rest.delete(f"lists/{LIST_ID}/member/{REQUESTER}")  # removed by hand in Mailman
    world.clock.advance(hours=2)  # past mailman.check_pending_every
    world.run_once()
    sent = by_rcpt(bridge.relay())
    [notice] = [m for m in sent[SECRETARIAT] if "changed behind the bot's back" in subject(m)]
    assert REQUESTER in flat(notice) and "walked-in@gmail.com" in flat(notice)
    rows = {r["address"]: (r["state"], r["source"], r["approved_by"]) for r in members_json(world, capsys, "--all")}
    assert rows == {REQUESTER: ("removed", "admitted", NL_ADMIN), "walked-in@gmail.com": ("member", "mailman", "")}
    # Told once: the next comparison finds nothing new.
    world.clock.advance(hours=2)
    world.run_once()
    assert not [m for m in bridge.relay() if "changed behind" in subject(m)]


def test_leave_by_mail_rest_dialect_removes_the_member_from_the_real_mailman(
    world: World,
    mailman3: Mailman3,
    bridge,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mailman3.create_list(LIST, "open", owners=[SECRETARIAT])
    use_rest(world, mailman3, dialect="mailman3-rest")
    monkeypatch.setenv(PASSWORD_ENV, mailman3.admin_pass)
    admit(world)
    world.deliver(leave_mail(world, signed=True))
    world.run_once()  # the leave is processed and the REST delete queued and made
    world.run_once()  # the notices about it go out
    assert mailman3.roster(LIST_ID) == []
    sent = by_rcpt(bridge.relay())
    assert f"Removed: {REQUESTER} (nl) from {LIST}" in [subject(m) for m in sent[SECRETARIAT]]
    assert f"You are no longer on {LIST}" in [subject(m) for m in sent[REQUESTER]]
    [row] = members_json(world, capsys, "--all")
    assert (row["state"], row["reason"]) == ("removed", "asked to leave")
