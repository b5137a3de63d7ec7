"""`secirbot explain FILE.eml`: a dry run of one mail against the current store, rules and templates.

Asserted: what the operator is told (taken for what, the new text, the checks, who would be asked, which
mail would go out) and that nothing happened: the real store is unchanged and the SMTP sink got nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from secirbot.config import load_config
from secirbot.explain import explain_command
from secirbot.rules import load_rules
from tests.clients import client_reply
from tests.flow import ADMIN_FROM, NL_ADMIN, open_request, request
from tests.harness import BOT, World, new_message


def run_explain(world: World, raw: bytes, *, as_json: bool = False) -> str:
    world.restart()  # the explain command is its own process: nothing of the world's bot is shared
    eml = world.root / "mail.eml"
    eml.write_bytes(raw)
    config = load_config(world.write_config())
    out, err = io.StringIO(), io.StringIO()
    assert (
        explain_command(config, load_rules(config.rules), eml, as_json=as_json, lookup=True, out=out, err=err) == 0
    ), err.getvalue()
    return out.getvalue()


def store_digest(world: World) -> str:
    path = world.root / "var" / "secirbot.sqlite3"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def test_a_request_is_explained_with_who_would_be_asked_and_nothing_happens(world: World) -> None:
    world.bot()  # a store exists, as in production
    world.restart()
    before = store_digest(world)
    raw = bytes(new_message("Jan Jansen <jan@registry.example>", BOT, "subscribe .nl", "Name: Jan\nI run CSIRT.\n"))
    text = run_explain(world, raw)
    assert "taken for:   request (subscribe)" in text
    assert "new text:    | Name: Jan" in text
    assert "request:     #1 for .nl would be pending; asked: admin@sidn.nl (administrative), tech@sidn.nl" in text
    assert "mail:        to admin@sidn.nl: Approval needed: jan@registry.example asks to join" in text
    assert "mail:        to jan@registry.example: Your request to join the ccTLD security list for .nl [#1]" in text
    assert world.sent() == []
    assert store_digest(world) == before
    assert world.mailbox.uids("INBOX") == []


def test_a_refused_request_says_which_rule(world: World) -> None:
    raw = bytes(new_message("Jan <jan@registry.example>", BOT, "subscribe .dk", "Name: Jan\n"))
    data = json.loads(run_explain(world, raw, as_json=True))
    assert data["taken_for"]["kind"] == "request"
    assert data["outcome"]["detail"] == "refused:pilot"
    assert [m["purpose"] for m in data["mail"]] == ["refused-pilot"]
    assert any(a["action"] == "request-refused" and a["rule"] == "pilot" for a in data["audit"])


def test_a_reply_shows_the_token_the_sender_checks_and_the_decision(world: World) -> None:
    opened = open_request(world)
    world.restart()  # the bot's process ends: its store is closed (and its WAL checkpointed)
    before = store_digest(world)
    raw = client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE")
    data = json.loads(run_explain(world, raw, as_json=True))
    assert data["taken_for"]["kind"] == "reply"
    assert data["token"] == {"header": "To", "trusted_header": False}
    assert data["new_text"] == "APPROVE"
    decided = [a for a in data["audit"] if a["action"] == "request-decided"]
    assert decided and decided[0]["decision"] == "APPROVE" and decided[0]["checks"]["from"] == "matches"
    assert "secir-request@lists.example.org" in [to for m in data["mail"] for to in m["to"]]
    # Only explained: the request is still open, nothing was sent, the store is as it was.
    assert world.sent() == []
    assert store_digest(world) == before
    assert request(world)["state"] == "pending"


def test_a_forged_reply_says_why_it_would_not_count(world: World) -> None:
    opened = open_request(world)
    raw = client_reply("gmail", opened.approvals[NL_ADMIN].message, "Mallory <mallory@evil.example>", "APPROVE")
    text = run_explain(world, raw)
    assert "outcome:     rejected:from-mismatch" in text
    assert "mail:        to secretariat@example.org: Rejected answer to request #1 (.nl): from-mismatch" in text


def test_machine_mail_and_an_unreadable_file(world: World, tmp_path: Path) -> None:
    raw = bytes(new_message("MAILER-DAEMON@mx.example", BOT, "Undelivered Mail Returned to Sender", "x\n"))
    text = run_explain(world, raw)
    assert "taken for:   automated (bounce)" in text and "mail:        none would be sent" in text
    config = load_config(world.write_config())
    err = io.StringIO()
    code = explain_command(
        config,
        load_rules(config.rules),
        tmp_path / "missing.eml",
        as_json=False,
        lookup=False,
        out=io.StringIO(),
        err=err,
    )
    assert code == 1 and err.getvalue().startswith("error: cannot read")


# --- secirbot init -------------------------------------------------------------------------------------


def test_init_writes_a_config_rules_and_templates_that_check_and_never_overwrites(tmp_path: Path) -> None:
    from secirbot.cli import check_templates
    from secirbot.init_cmd import init_command

    out, err = io.StringIO(), io.StringIO()
    assert init_command(tmp_path / "site", out, err) == 0, err.getvalue()
    config = load_config(tmp_path / "site" / "secirbot.yaml", environ={"SECIRBOT_IMAP_PASSWORD": "secret"})
    assert config.rules == tmp_path / "site" / "rules.yaml" and config.templates == tmp_path / "site" / "templates"
    assert load_rules(config.rules).pilot.enabled
    assert check_templates(config) == []
    assert "FILL IN" in (tmp_path / "site" / "secirbot.yaml").read_text()
    (tmp_path / "site" / "rules.yaml").write_text("# mine\n")
    err = io.StringIO()
    assert init_command(tmp_path / "site", io.StringIO(), err) == 1
    assert "not overwriting" in err.getvalue()
    assert (tmp_path / "site" / "rules.yaml").read_text() == "# mine\n"


def test_explain_and_init_from_the_command_line(world: World, tmp_path: Path) -> None:
    from tests.helpers_intake import secirbot

    eml = tmp_path / "request.eml"
    eml.write_bytes(bytes(new_message("Jan <jan@registry.example>", BOT, "subscribe .nl", "Name: Jan\n")))
    done = secirbot("--config", str(world.write_config()), "explain", str(eml), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["taken_for"]["kind"] == "request" and data["request"]["state"] == "pending"
    assert world.sent() == []
    done = secirbot("init", str(tmp_path / "site"))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "site").iterdir()) == ["rules.yaml", "secirbot.yaml", "templates"]
    again = secirbot("init", str(tmp_path / "site"))
    assert again.returncode == 1 and "not overwriting" in again.stderr


def test_a_leave_and_a_colleagues_answer_are_explained(world: World) -> None:
    opened = open_request(world)
    world.restart()
    before = store_digest(world)
    # A colleague of the contact's organisation, unsigned: refused as a delegate, and the reason is given.
    raw = client_reply("gmail", opened.approvals[NL_ADMIN].message, "Piet <piet@sidn.nl>", "APPROVE")
    data = json.loads(run_explain(world, raw, as_json=True))
    assert data["outcome"]["detail"] == "rejected:delegate-unauthenticated"
    rejected = [a for a in data["audit"] if a["action"] == "reply-rejected"]
    assert rejected and "could not be authenticated" in rejected[0]["failure"]
    # Someone who is not a member asks to leave: taken for membership mail, answered, nothing changed.
    raw = bytes(new_message("Ann <ann@registry.example>", BOT, "unsubscribe", "please\n"))
    data = json.loads(run_explain(world, raw, as_json=True))
    assert (data["taken_for"]["kind"], data["outcome"]["detail"]) == ("membership", "leave-not-member")
    assert [m["purpose"] for m in data["mail"]] == ["leave-not-member"]
    assert store_digest(world) == before and world.sent() == []
