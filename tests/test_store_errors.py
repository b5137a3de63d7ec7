"""A store the bot cannot use, as the operator meets it: not a database, damaged, read-only, a lock file
that cannot be created, and several `secirbot` processes starting together on a new store.

Every command runs as a real process (`python -m secirbot`). What must hold: one line on stderr naming the
path and what to do, no traceback, exit status 5 (README: exit statuses), and nothing changed or lost
(the mail stays in the mailbox, the store file is left as it was).

The tests run as root, and root ignores file modes: a file is made read-only with `chattr +i` (refused
even to root), and with chmod when not root.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from secirbot.store import SCHEMA_VERSION, Store
from tests.harness import REPO, World
from tests.helpers_intake import cli_env, note, secirbot

EXIT_STORE = 5
TABLES = [
    "approvers",
    "audit",
    "confirmations",
    "delegations",
    "delivery_events",
    "folder_state",
    "iana_snapshots",
    "invitations",
    "members",
    "messages",
    "meta",
    "outbox",
    "requester_tokens",
    "requests",
    "revets",
    "tokens",
]


def store_path(world: World) -> Path:
    return world.root / "var" / "secirbot.sqlite3"


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The command's only stderr line (no traceback, no log noise); fails otherwise."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` (file or folder) cannot be written while inside, by root too."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root where `chattr +i` is not available: no way to make a file read-only")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


def a_store_with_history(world: World) -> Path:
    """A real store, written by a real `run --once` that answered one message."""
    world.deliver(note("Ann <ann@example.net>"))
    done = secirbot("--config", str(world.write_config()), "run", "--once")
    assert done.returncode == 0, done.stderr
    world.sent()
    return store_path(world)


# --- not a database, damaged ------------------------------------------------------------------------


def test_a_store_that_is_not_a_database_is_one_line_and_exit_5_and_nothing_is_touched(world: World) -> None:
    config = str(world.write_config())
    path = store_path(world)
    path.parent.mkdir(parents=True)
    garbage = b"these are not the bytes of a SQLite database\n" * 100
    path.write_bytes(garbage)
    world.deliver(note("Ann <ann@example.net>"))

    for command in (["run", "--once"], ["check"], ["lookup", "nl"], ["requests"], ["show", "1"]):
        done = secirbot("--config", config, *command)
        assert done.returncode == EXIT_STORE, (command, done.stderr)
        line = one_error_line(done)
        assert line.startswith(f"error: the store {path} is not a SQLite database (file is not a database)"), line
        assert "restore the file from a backup, or move it away" in line

    health = secirbot("--config", config, "check", "--health")
    assert health.returncode == 1 and "Traceback" not in health.stderr
    assert (
        health.stdout == f"unhealthy: the store {path} is not a SQLite database (file is not a database): "
        "check store.path; restore the file from a backup, or move it away and the bot starts an empty one\n"
    )

    assert path.read_bytes() == garbage  # nobody "repaired" it
    assert len(world.mailbox.uids("INBOX")) == 1 and world.sent() == []  # the mail waits, unanswered


def test_check_finds_a_damaged_store_that_still_opens(world: World) -> None:
    path = a_store_with_history(world)
    config = str(world.config_file)
    ok = secirbot("--config", config, "check")
    assert ok.returncode == 0, ok.stderr
    assert f"store: ok, {path} (schema version {SCHEMA_VERSION})" in ok.stdout.splitlines()

    # Overwrite the pages after the first (sqlite_master, which still reads): the tables' B-trees are gone.
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(path, "r+b") as f:
        f.seek(page_size * 2)
        f.write(b"\xa5" * page_size * 4)

    done = secirbot("--config", config, "check")
    assert done.returncode == EXIT_STORE
    line = one_error_line(done)
    assert line.startswith(f"error: the store {path} is damaged"), line


# --- read-only --------------------------------------------------------------------------------------


def test_a_read_only_store_is_refused_at_start_with_one_line_and_the_mail_waits(world: World) -> None:
    path = a_store_with_history(world)
    config = str(world.config_file)
    before = path.read_bytes()
    world.deliver(note("Bob <bob@example.org>"))

    with read_only(path):
        run = secirbot("--config", config, "run", "--once")
        check = secirbot("--config", config, "check")
        lookup = secirbot("--config", config, "lookup", "nl")

    assert run.returncode == EXIT_STORE
    assert one_error_line(run) == (
        f"error: the store {path} is read-only (attempt to write a readonly database): the user running "
        "secirbot must be able to write the file, its -wal and -shm files and its folder (check owner, mode, "
        "`lsattr`/`chattr -i`, read-only mounts)"
    )
    assert lookup.returncode == EXIT_STORE and "is read-only" in one_error_line(lookup)
    assert check.returncode == EXIT_STORE
    assert one_error_line(check).startswith(f"error: the store {path} cannot be written (")
    # Refused before any message was touched: nothing quarantined, nothing answered, the store unchanged.
    assert len(world.mailbox.uids("INBOX")) == 1 and world.mailbox.uids("Failed") == []
    assert world.sent() == [] and path.read_bytes() == before

    again = secirbot("--config", config, "run", "--once")  # writable again: it is answered
    assert again.returncode == 0, again.stderr
    assert [m.rcpt_tos for m in world.sent()] == [["bob@example.org"]]


# --- lock files ---------------------------------------------------------------------------------------


def test_a_lock_file_that_cannot_be_created_is_one_line(world: World) -> None:
    path = a_store_with_history(world)
    config = str(world.config_file)
    lock = path.with_name(path.name + ".lock")
    lock.unlink()
    world.deliver(note("Bob <bob@example.org>"))

    with read_only(path.parent):  # the folder: no new lock file in it
        done = secirbot("--config", config, "run", "--once")
    assert done.returncode == EXIT_STORE
    line = one_error_line(done)
    assert line.startswith(f"error: cannot create the lock file {lock} ("), line
    assert "in a writable folder" in line

    # store.path under a regular file: the lock's folder cannot even be made.
    blocker = world.root / "not-a-folder"
    blocker.write_text("a file\n")
    other = world.root / "other.yaml"
    data = yaml.safe_load(world.config_file.read_text())
    data["store"]["path"] = str(blocker / "secirbot.sqlite3")
    other.write_text(yaml.safe_dump(data))
    under = secirbot("--config", str(other), "run", "--once")
    assert under.returncode == EXIT_STORE
    assert one_error_line(under).startswith(
        f"error: cannot create the lock file {blocker / 'secirbot.sqlite3.lock'} ({blocker}: File exists)"
    )
    lookup = secirbot("--config", str(other), "lookup", "nl")
    assert lookup.returncode == EXIT_STORE
    assert one_error_line(lookup).startswith(f"error: cannot create the folder of the store {blocker}/")
    assert len(world.mailbox.uids("INBOX")) == 1 and world.sent() == []


# --- a new store, opened by several processes at the same moment ----------------------------------------

_OPEN_AT = """\
import sys, time
start = float(sys.argv[1])
while time.time() < start:
    pass
{body}
"""
_STORE = "from secirbot.store import Store\nStore(sys.argv[2]).close()\nprint('opened')"
_CLI = "import secirbot.cli\nsys.exit(secirbot.cli.main(sys.argv[2:]))"


def start_together(scripts: list[tuple[str, list[str]]]) -> list[subprocess.CompletedProcess[str]]:
    """Start every (script, args) as its own Python process; each spins until the same moment, then runs."""
    start = time.time() + 2.0  # time for every interpreter to start and import
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_AT.format(body=body), f"{start:.6f}", *args],
            cwd=REPO,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for body, args in scripts
    ]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def schema(path: Path) -> tuple[int, list[str]]:
    store = Store(path, readonly=True)
    try:
        tables = [r["name"] for r in store.all("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return store.version, tables
    finally:
        store.close()


@pytest.mark.parametrize("round_", range(3))
def test_six_processes_opening_one_new_store_at_the_same_moment_all_succeed(tmp_path: Path, round_: int) -> None:
    path = tmp_path / "var" / "secirbot.sqlite3"
    done = start_together([(_STORE, [str(path)])] * 6)
    assert [(d.returncode, d.stdout, d.stderr) for d in done] == [(0, "opened\n", "")] * 6
    assert schema(path) == (SCHEMA_VERSION, TABLES)


def test_commands_started_together_on_a_new_store_all_work(tmp_path: Path) -> None:
    """`approve` and `deny`, three of each, the moment a fresh deployment comes up: commands that write
    create the store (read-only ones never do), and every one of them must find it sound."""
    config = tmp_path / "secirbot.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": {"path": "var/secirbot.sqlite3"},
                "templates": str(REPO / "templates"),
                "rules": str(REPO / "rules.yaml"),
            }
        )
    )
    approve = (_CLI, ["--config", str(config), "approve", "1"])
    deny = (_CLI, ["--config", str(config), "deny", "1", "--reason", "x"])
    done = start_together([approve, deny] * 3)
    assert [(d.returncode, d.stderr) for d in done] == [(1, "error: no request 1\n")] * 6
    assert schema(tmp_path / "var" / "secirbot.sqlite3") == (SCHEMA_VERSION, TABLES)
