"""The `secirbot` command's lifecycle as a real process: `run --once`, `run` until a signal, one instance only."""

from __future__ import annotations

import importlib
import signal
import subprocess
import time
import tomllib

import pytest

from tests.harness import REPO, World
from tests.helpers_intake import note, secirbot, start_secirbot, wait_until


def test_the_secirbot_command_is_declared_for_pip_install() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["secirbot"].partition(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_run_once_as_a_process_processes_what_waits_and_exits_0(world: World) -> None:
    config = world.write_config()
    world.deliver(note("Ann <ann@example.net>"))
    world.deliver(note("Bob <bob@example.org>"))

    done = secirbot("--config", str(config), "run", "--once")

    assert done.returncode == 0, done.stderr
    assert "processed 2 message(s)" in done.stderr
    assert sorted(r for m in world.sink.messages for r in m.rcpt_tos) == ["ann@example.net", "bob@example.org"]
    assert world.mailbox.uids("INBOX") == [] and len(world.mailbox.uids("Processed")) == 2


def blocked_in_poll(pid: int, samples: int = 3) -> bool:
    """The process's main thread has sat in poll/select for a while: it waits for news (IDLE), it does
    not work on a message. Reads /proc/PID/syscall; without it, a settling pause has to do."""
    waits = {"7", "23", "270", "271"}  # x86_64 poll, select, pselect6, ppoll
    path = f"/proc/{pid}/syscall"
    for _ in range(samples):
        try:
            with open(path) as f:
                if f.read().split()[0] not in waits:
                    return False
        except (OSError, IndexError):
            time.sleep(1.0)
            return True
        time.sleep(0.05)
    return True


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_serves_new_mail_until_a_signal_and_then_exits_0_promptly(world: World, signum: int) -> None:
    config = world.write_config()
    proc = start_secirbot("--config", str(config), "run")
    try:
        # It runs: mail that arrives while it waits is answered without another start.
        world.deliver(note("Ann <ann@example.net>"))
        world.sink.wait_for(1, timeout=20)
        wait_until(lambda: world.mailbox.uids("Processed"), what="the message to be filed")
        wait_until(lambda: blocked_in_poll(proc.pid), what="the bot to wait for news (IDLE)")

        started = time.monotonic()
        proc.send_signal(signum)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {time.monotonic() - started:.0f} s after {signal.Signals(signum).name}")
        assert code == 0, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() - started < 5
    finally:
        _stop(proc)
    assert [m.rcpt_tos for m in world.sink.messages] == [["ann@example.net"]]


def test_a_second_run_on_the_same_store_or_mailbox_refuses_to_start(world: World) -> None:
    config = world.write_config()
    lock = world.root / "var" / "secirbot.sqlite3.lock"
    first = start_secirbot("--config", str(config), "run")
    try:
        wait_until(lambda: lock.exists() and lock.read_text() == str(first.pid), what="the first bot's lock")

        second = secirbot("--config", str(config), "run", timeout=30)
        assert second.returncode != 0
        assert "already running on this store" in second.stderr
        assert f"pid {first.pid}" in second.stderr

        # Another configuration (its own store) on the same mailbox is refused too.
        other = world.root / "other.yaml"
        other.write_text(config.read_text().replace("var/secirbot.sqlite3", "var/other.sqlite3"))
        third = secirbot("--config", str(other), "run", "--once", timeout=30)
        assert third.returncode != 0
        assert "already running on this mailbox" in third.stderr
        assert first.poll() is None
    finally:
        _stop(first)
