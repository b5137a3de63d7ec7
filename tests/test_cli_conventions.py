"""CLI conventions a user sees: --version, --config after the command, checked choices, help with exit
codes, who is recorded as deciding, and a quiet exit when the reader of the output goes away."""

from __future__ import annotations

import subprocess
import sys

import pytest

from secirbot.cli import build_parser, cli_actor, main
from secirbot.store import Store
from tests.flow import by_rcpt, open_request, request
from tests.harness import World
from tests.helpers_intake import audit, secirbot


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("secirbot ")


@pytest.mark.parametrize(
    "argv", [["--config", "x.yaml", "check"], ["check", "--config", "x.yaml"]], ids=["before", "after"]
)
def test_config_before_or_after_the_command(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).config == "x.yaml"


def test_config_absent_is_none() -> None:
    assert build_parser().parse_args(["check"]).config is None


def test_state_choices_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["requests", "--state", "pendng"])
    assert done.value.code == 2
    assert "invalid choice: 'pendng'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "check", "requests", "show", "approve", "deny", "invite", "demo"])
def test_every_option_has_help_and_exit_codes(command: str) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0])))  # type: ignore[union-attr]
    p = sub.choices[command]  # type: ignore[attr-defined]
    for action in p._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
    assert "exit status:" in p.format_help()


def test_actor_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "alice")
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.delenv("SECIRBOT_OPERATOR", raising=False)
    assert cli_actor() == "cli:alice"
    monkeypatch.setenv("SECIRBOT_OPERATOR", "Bob Secretariat")
    assert cli_actor() == "cli:Bob Secretariat"
    assert cli_actor("carol") == "cli:carol"


def test_by_is_parsed_for_decisions() -> None:
    args = build_parser().parse_args(["approve", "7", "--by", "carol"])
    assert (args.id, args.by) == (7, "carol")
    assert build_parser().parse_args(["deny", "7", "--reason", "no"]).by is None


def test_closed_pipe_exits_quietly() -> None:
    # A command whose output is larger than a pipe buffer, read by `head -1`: no traceback, exit 0.
    script = (
        "import sys, secirbot.cli as c\n"
        "c.COMMANDS['requests'] = lambda a: [print('x' * 100) for _ in range(100000)] and 0\n"
        "sys.exit(c.main(['requests']))\n"
    )
    done = subprocess.run(
        f'{sys.executable} -c "{script}" | head -1; exit ${{PIPESTATUS[0]}}',
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout == "x" * 100 + "\n"
    assert done.stderr == ""
    assert done.returncode == 0


# --- invite: dry run and re-invitations ----------------------------------------------------------------


def test_invite_dry_run_says_who_would_get_what_and_sends_and_records_nothing(world: World) -> None:
    store_file = world.root / "var" / "secirbot.sqlite3"
    done = secirbot("--config", str(world.write_config()), "invite", "--dry-run", "nl")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        ".nl: would mail invitation.txt to admin@sidn.nl (dry run: nothing sent or recorded)"
    ]
    assert world.sent() == []
    store = Store(store_file)
    try:
        assert store.all("SELECT id FROM invitations") == []
        assert store.all("SELECT id FROM iana_snapshots") == []
    finally:
        store.close()


def test_reinviting_within_min_interval_needs_again(world: World) -> None:
    config = str(world.write_config())
    assert secirbot("--config", config, "invite", "nl").returncode == 0
    world.sent()
    again = secirbot("--config", config, "invite", "nl")
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1
    assert ".nl: not invited: already invited at " in again.stderr and "use --again" in again.stderr
    assert world.sent() == []
    forced = secirbot("--config", config, "invite", "nl", "--again")
    assert forced.returncode == 0, forced.stderr
    assert list(by_rcpt(world.sent())) == ["admin@sidn.nl"]


# --- who decided, and approving before anyone was asked ---------------------------------------------------


def test_approve_before_iana_was_asked_needs_force_and_by_is_audited(world: World) -> None:
    world.whois.modes["nl"] = "empty"
    world.rdap.modes["nl"] = "500"
    open_request(world)
    config = str(world.write_config())
    refused = secirbot("--config", config, "approve", "1")
    assert refused.returncode == 1
    assert refused.stderr == (
        "error: request 1: no IANA contact of nl was asked yet; approve with --force to decide without them\n"
    )
    assert request(world)["state"] == "resolving"
    done = secirbot("approve", "1", "--force", "--by", "carol", "--config", config)
    assert done.returncode == 0, done.stderr
    assert "recorded by cli:carol" in done.stdout
    assert request(world)["decided_by"] == "cli:carol"
    store = Store(world.root / "var" / "secirbot.sqlite3")
    try:
        assert any(row["actor"] == "cli:carol" for row in audit(store))
    finally:
        store.close()
