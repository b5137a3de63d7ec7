"""Issue 16, "Run it for real": what an operator sees when the IMAP password is wrong, as real processes
against the real Dovecot and SMTP sink."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import REPO, SECRETARIAT, World
from tests.helpers_intake import cli_env, note, secirbot, start_secirbot


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.stderr.read() if proc.stderr else ""


def test_run_once_with_a_wrong_imap_password_exits_1_with_one_error_and_mails_the_secretariat_once(
    world: World,
) -> None:
    world.settings["imap.password"] = "not-the-password"
    config = world.write_config()

    done = secirbot("--config", str(config), "run", "--once", timeout=60)

    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, done.stderr
    assert "IMAP login failed" in errors[0] and "imap.password" in errors[0]
    assert "reconnecting" not in done.stderr  # no network backoff for a refused login
    alerts = world.sent_to(SECRETARIAT, world.sent(clear=False))
    assert len(alerts) == 1
    assert "cannot log in" in str(alerts[0].message["Subject"])

    # The same outage, a second pass: the log says it again, the Secretariat is not mailed again.
    again = secirbot("--config", str(config), "run", "--once", timeout=60)
    assert again.returncode == 1
    assert "IMAP login failed" in again.stderr
    assert len(world.sent_to(SECRETARIAT, world.sent(clear=False))) == 1


def test_run_with_a_wrong_imap_password_logs_an_error_mails_once_keeps_running_and_stops_on_sigterm(
    world: World,
) -> None:
    world.settings["imap.password"] = "not-the-password"
    config = world.write_config()
    proc = start_secirbot("--config", str(config), "run")
    try:
        world.sink.wait_for(1, timeout=30)
        assert proc.poll() is None  # it keeps trying (slowly), it does not die
        assert len(world.sent_to(SECRETARIAT, world.sent(clear=False))) == 1
    finally:
        stderr = _stop(proc)
    assert proc.returncode == 0, stderr
    assert "IMAP login failed" in stderr and "retrying every 5 min" in stderr
    assert "reconnecting in" not in stderr


# --- no silent fall-backs ---------------------------------------------------------------------------


def _secirbot_in(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m secirbot ARGS` run from `cwd`, with HOME there too (so ~/.config is the test's)."""
    return subprocess.run(
        [sys.executable, "-m", "secirbot", *args],
        cwd=cwd,
        env=cli_env(HOME=str(cwd), **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "command", [["requests"], ["show", "1"], ["export"], ["report"]], ids=["requests", "show", "export", "report"]
)
def test_a_read_only_command_from_the_wrong_folder_names_the_missing_store_and_creates_none(
    tmp_path: Path, command: list[str]
) -> None:
    done = _secirbot_in(tmp_path, *command)

    store = tmp_path / "var" / "secirbot.sqlite3"
    if command == ["report"]:  # it needs rules.yaml first, and says that it is missing
        assert done.returncode == 2 and "rules.yaml: cannot read" in done.stderr, done.stderr
    else:
        assert done.returncode == 5, done.stderr
        assert f"no store at {store}" in done.stderr
    assert "no configuration found (sandbox mode)" in done.stderr  # the INFO line: which config and store
    assert "no requests" not in done.stdout
    assert not store.exists() and not (tmp_path / "var").exists()


def test_a_configuration_in_the_user_config_folder_is_found_and_named(tmp_path: Path) -> None:
    folder = tmp_path / ".config" / "secirbot"
    folder.mkdir(parents=True)
    (folder / "secirbot.yaml").write_text("store: {path: elsewhere.sqlite3}\n")

    done = _secirbot_in(tmp_path, "requests")

    assert done.returncode == 5
    assert f"configuration {folder / 'secirbot.yaml'}" in done.stderr
    assert f"no store at {folder / 'elsewhere.sqlite3'}" in done.stderr


@pytest.mark.parametrize("how", ["--config", "SECIRBOT_CONFIG"])
def test_an_explicitly_named_empty_configuration_is_a_config_error_not_sandbox_mode(tmp_path: Path, how: str) -> None:
    empty = tmp_path / "secirbot.yaml"
    empty.write_text("")
    if how == "--config":
        done = _secirbot_in(tmp_path, "--config", str(empty), "check")
    else:
        done = _secirbot_in(tmp_path, "check", SECIRBOT_CONFIG=str(empty))

    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{empty}: the configuration file is empty" in done.stderr
    assert "sandbox" not in done.stdout


# --- SIGHUP reloads ---------------------------------------------------------------------------------


def test_sighup_reloads_templates_and_keeps_the_old_rules_when_the_new_ones_are_invalid(world: World) -> None:
    templates = world.root / "templates"
    shutil.copytree(REPO / "templates", templates)
    world.settings["templates"] = str(templates)
    config = world.write_config()
    proc = start_secirbot("--config", str(config), "run")
    try:
        world.deliver(note("Ann <ann@example.net>"))
        first = world.sink.wait_for(1, timeout=20)
        assert not str(first[0].message["Subject"]).startswith("Reloaded")

        help_txt = templates / "help.txt"
        help_txt.write_text("Subject: Reloaded help\n" + help_txt.read_text().split("\n", 1)[1])
        proc.send_signal(signal.SIGHUP)
        time.sleep(2)
        assert proc.poll() is None
        world.deliver(note("Bob <bob@example.org>"))
        second = world.sink.wait_for(2, timeout=20)
        assert str(second[1].message["Subject"]) == "Reloaded help"

        (world.root / "rules.yaml").write_text("requests: [unclosed\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(2)
        assert proc.poll() is None  # an invalid file does not end the daemon
        world.deliver(note("Carol <carol@example.com>"))
        third = world.sink.wait_for(3, timeout=20)
        assert str(third[2].message["Subject"]) == "Reloaded help"
    finally:
        stderr = _stop(proc)
    assert proc.returncode == 0, stderr
    assert "reloaded" in stderr
    refused = [line for line in stderr.splitlines() if "reload refused" in line]
    assert len(refused) == 1 and "rules.yaml" in refused[0]
