"""The daemon against the real Dovecot: IDLE reaction, reconnects after a restart or a kill, no busy loop
while the server is down, SIGTERM during a burst, one instance per mailbox, due work at start.

In-process tests run `Daemon.run` (IDLE, backoff, APScheduler tick: the code `secirbot run` runs) in a
thread on the world's bot; the others run `python -m secirbot run` as a real process. Nothing here waits for
a schedule: waits are polls with deadlines for things that happen over the network.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from secirbot.daemon import Daemon
from secirbot.health import HEARTBEAT_KEY
from secirbot.mailbox import Mailbox
from secirbot.store import Store
from tests.flow import NL_ADMIN, open_request, subject
from tests.harness import World, new_message
from tests.helpers_intake import cli_env, note, rcpts, secirbot, start_secirbot, wait_until

IDLE_SAMPLES = 10


@contextlib.contextmanager
def running(world: World, mailbox_factory: Callable[[], Mailbox] | None = None) -> Iterator[Daemon]:
    """`Daemon.run` in a thread on the world's bot; stopped (as SIGTERM would) at the end."""
    daemon = Daemon(world.bot(), mailbox_factory=mailbox_factory)
    thread = threading.Thread(target=daemon.run, name="secirbot-test-daemon", daemon=True)
    thread.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        thread.join(15)
        assert not thread.is_alive(), "the daemon did not stop within 15 s of stop()"


def idle(daemon: Daemon, what: str = "the daemon to wait in IDLE") -> None:
    wait_until(lambda: daemon.waiting.is_set() and daemon.mailbox is not None, timeout=20, what=what)


def answered(world: World, count: int, timeout: float = 20) -> float:
    """Wait until the sink has `count` mails; returns when (monotonic)."""
    world.sink.wait_for(count, timeout=timeout)
    return time.monotonic()


# --- IDLE ------------------------------------------------------------------------------------------


def test_a_new_message_is_answered_through_idle_without_polling(world: World) -> None:
    world.settings["imap.poll_seconds"] = 600  # were it polling, nothing would happen for ten minutes
    delays = []
    with running(world) as daemon:
        idle(daemon)
        assert daemon.mailbox is not None and daemon.mailbox.can_idle
        for i in range(IDLE_SAMPLES):
            idle(daemon)
            start = time.monotonic()
            world.deliver(note(f"Person {i} <person{i:02d}@example.net>"))
            delays.append(answered(world, i + 1, timeout=10) - start)
    assert rcpts(world) == [f"person{i:02d}@example.net" for i in range(IDLE_SAMPLES)]
    assert world.mailbox.uids("INBOX") == [] and len(world.mailbox.uids("Processed")) == IDLE_SAMPLES
    print(
        f"\nIDLE reaction delay (APPEND to Dovecot -> the bot's reply accepted by the SMTP sink), "
        f"{IDLE_SAMPLES} messages: median {statistics.median(delays):.3f} s, min {min(delays):.3f} s, "
        f"max {max(delays):.3f} s; all: {' '.join(f'{d:.3f}' for d in delays)}"
    )


# --- the server goes away ---------------------------------------------------------------------------


def test_the_daemon_reconnects_after_dovecot_is_restarted(world: World) -> None:
    dovecot = world.mailbox.server
    with running(world) as daemon:
        world.deliver(note("Ann <ann@example.net>"))
        answered(world, 1)
        idle(daemon)
        dovecot.restart()  # clients get "* BYE Server shutting down"
        restarted = time.monotonic()
        world.deliver(note("Bob <bob@example.org>"))
        delay = answered(world, 2) - restarted
    print(f"\nanswered {delay:.2f} s after Dovecot was restarted (graceful stop + start)")
    assert rcpts(world) == ["ann@example.net", "bob@example.org"]
    assert world.mailbox.uids("INBOX") == [] and len(world.mailbox.uids("Processed")) == 2


def test_a_connection_dropped_during_idle_is_noticed_without_busy_looping_and_served_again(world: World) -> None:
    """Dovecot is killed (SIGKILL: no BYE) while the bot sits in IDLE, stays down for a while, comes back."""
    dovecot = world.mailbox.server
    connects: list[float] = []

    def counting_factory() -> Mailbox:
        connects.append(time.monotonic())
        return Mailbox(world.bot().config.imap)

    down_for = 3.0
    with running(world, counting_factory) as daemon:
        world.deliver(note("Ann <ann@example.net>"))
        answered(world, 1)
        idle(daemon)
        before = len(connects)
        cpu = time.process_time()
        dovecot.kill()
        killed = time.monotonic()
        # While the server is down: the drop is noticed (a reconnect is tried), but with backoff, not in a
        # loop. This is a measurement window, not a schedule, so it has to be a plain wait.
        time.sleep(down_for)
        cpu = time.process_time() - cpu
        attempts = [t - killed for t in connects[before:]]
        dovecot.start()
        back = time.monotonic()
        world.deliver(note("Bob <bob@example.org>"))
        delay = answered(world, 2, timeout=30) - back
    print(
        f"\nDovecot killed during IDLE: reconnect attempts at {', '.join(f'{t:.2f}' for t in attempts)} s "
        f"while down for {down_for:.1f} s; process CPU in that time {cpu:.2f} s; "
        f"answered {delay:.2f} s after it was back"
    )
    assert attempts, "the dropped connection was not noticed: no reconnect attempt while the server was down"
    assert attempts[0] < down_for  # noticed at once (first backoff 1-2 s), not after IDLE's 10 min
    assert len(attempts) <= 3  # exponential backoff, no busy loop
    assert cpu < 0.5 * down_for
    assert rcpts(world) == ["ann@example.net", "bob@example.org"]
    assert world.mailbox.uids("INBOX") == [] and len(world.mailbox.uids("Processed")) == 2


def test_a_graceful_stop_while_idle_logs_no_warning(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with running(world) as daemon:
        idle(daemon)
        time.sleep(0.2)  # let it settle in IDLE's select()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []


def silent_smtp(world: World) -> socket.socket:
    """An SMTP server that accepts the connection (the kernel does, into the backlog) and never greets; the
    world's bot sends to it, with a 30 s timeout."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    world.settings.update({"smtp.port": silent.getsockname()[1], "smtp.timeout_seconds": 30})
    return silent


def test_a_stop_while_the_smtp_server_hangs_still_ends_within_seconds(world: World) -> None:
    silent = silent_smtp(world)
    daemon = Daemon(world.bot())
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        world.deliver(note("Ann <ann@example.net>"))
        # Filed, then the outbox is flushed: that is where it waits for the greeting.
        wait_until(
            lambda: "Processed" in world.mailbox.folders() and world.mailbox.uids("Processed"),
            timeout=20,
            what="the message to be filed",
        )
        time.sleep(0.3)
        daemon.stop()  # what SIGTERM does
        thread.join(3)
        assert not thread.is_alive(), "still flushing the outbox 3 s after stop()"
    finally:
        silent.close()  # resets the waiting connection: the thread ends
        daemon.stop()
        thread.join(15)
    assert world.bot().outbox.pending_count() == 1  # the reply stays queued for the next start


def filed(world: World) -> int:
    return len(world.mailbox.uids("Processed")) if "Processed" in world.mailbox.folders() else 0


def test_an_smtp_server_that_never_answers_holds_up_no_mail_processing(world: World) -> None:
    # The sender thread waits on the silent server (30 s timeout); the mail loop goes on reading. Before the
    # sender had its own thread, the second mail waited in the inbox for the whole SMTP timeout.
    with contextlib.closing(silent_smtp(world)), running(world):
        world.deliver(note("Ann <ann@example.net>"))
        wait_until(lambda: filed(world) == 1, timeout=20, what="Ann's mail to be filed")
        world.deliver(note("Bob <bob@example.org>"))
        started = time.monotonic()
        wait_until(lambda: filed(world) == 2, timeout=20, what="Bob's mail to be filed")
        filed_after = time.monotonic() - started
    assert filed_after < 15, f"Bob's mail was filed {filed_after:.1f} s later, behind the SMTP timeout"
    assert world.bot().outbox.pending_count() == 2  # both replies wait for the server, none is lost
    assert world.mailbox.uids("INBOX") == []


# --- SIGTERM ---------------------------------------------------------------------------------------

BURST = 20


def test_sigterm_during_a_burst_finishes_the_current_message_flushes_and_exits_0(world: World) -> None:
    world.rules["requests"] = {"seats_per_cctld": 100, "max_per_cctld_per_hour": 100, "max_per_hour": 100}
    world.whois.delay["nl"] = 0.15  # each request takes a real IANA round trip, slowly
    requesters = [f"person{i:02d}@example.net" for i in range(BURST)]
    with world.mailbox.session() as client:
        for i, address in enumerate(requesters):
            msg = new_message(
                f"Person {i} <{address}>",
                "join@lists.example.org",
                "subscribe .nl",
                f"Name: Person {i}\nRole: CSIRT\nI handle incidents for the .nl registry.\n",
            )
            client.append("INBOX", msg.as_bytes())
    config = world.write_config()
    proc = start_secirbot("--config", str(config), "run")
    try:
        wait_until(lambda: world.whois.counts["nl"] >= 4, timeout=30, what="the burst to be under way")
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = proc.wait(timeout=15)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    stderr = proc.stderr.read() if proc.stderr else ""
    print(f"\nSIGTERM during a burst: exit {code} after {took:.2f} s")
    assert code == 0, stderr
    assert took < 5
    assert "stopping after the current message" in stderr

    processed = len(world.mailbox.uids("Processed"))
    waiting = len(world.mailbox.uids("INBOX"))
    assert processed + waiting == BURST
    store = Store(world.root / "var" / "secirbot.sqlite3")
    try:
        assert store.one("SELECT COUNT(*) AS n FROM messages")["n"] == processed  # filed all it processed
        # IANA is asked off the message path: the lookups stopped midway, the rest wait in the store.
        states = {r["state"]: r["n"] for r in store.all("SELECT state, COUNT(*) AS n FROM requests GROUP BY state")}
        assert sum(states.values()) == processed and 0 < states.get("pending", 0) < processed, states
        assert store.one("SELECT COUNT(*) AS n FROM outbox WHERE state = 'queued'")["n"] == 0  # outbox flushed
    finally:
        store.close()
    acks = [m.rcpt_tos[0] for m in world.sink.messages if subject(m).startswith("Your request")]
    assert len(acks) == states["pending"] and len(set(acks)) == len(acks)  # each looked-up request, once

    # The next run processes the rest, and nothing twice.
    world.whois.delay.clear()
    done = secirbot("--config", str(config), "run", "--once")
    assert done.returncode == 0, done.stderr
    acks = sorted(m.rcpt_tos[0] for m in world.sink.messages if subject(m).startswith("Your request"))
    assert acks == requesters
    assert world.mailbox.uids("INBOX") == [] and len(world.mailbox.uids("Processed")) == BURST
    store = Store(world.root / "var" / "secirbot.sqlite3")
    try:
        assert store.one("SELECT COUNT(*) AS n FROM requests")["n"] == BURST
        kinds = store.all("SELECT kind, COUNT(*) AS n FROM messages GROUP BY kind")
        assert [(r["kind"], r["n"]) for r in kinds] == [("request", BURST)]
    finally:
        store.close()


# --- one instance per mailbox ----------------------------------------------------------------------


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_two_instances_started_together_on_one_mailbox_one_refuses_and_mail_is_answered_once(world: World) -> None:
    first_config = world.write_config()
    # A second deployment: its own configuration and store, the same mailbox.
    second_config = world.root / "second.yaml"
    second_config.write_text(first_config.read_text().replace("var/secirbot.sqlite3", "var2/secirbot.sqlite3"))
    procs = [
        start_secirbot("--config", str(first_config), "run"),
        start_secirbot("--config", str(second_config), "run"),
    ]
    try:
        loser = wait_until(
            lambda: next((p for p in procs if p.poll() is not None), None), timeout=20, what="one of the two to refuse"
        )
        winner = next(p for p in procs if p is not loser)
        assert loser.returncode == 1
        message = loser.stderr.read() if loser.stderr else ""
        assert f"another secirbot (pid {winner.pid}) is already running on this mailbox" in message
        assert message.count("\n") <= 2, message  # one clear line (plus at most a log line)

        for i in range(3):
            world.deliver(note(f"P{i} <p{i}@example.net>"))
        answered(world, 3)
        assert winner.poll() is None

        # The winner crashes (SIGKILL: its lock files stay behind, naming a dead pid, and its lease on the
        # mailbox has minutes to run). The other deployment still may not take the mailbox ...
        winner.kill()
        winner.wait(10)
        winner_config, loser_config = (
            (first_config, second_config) if winner is procs[0] else (second_config, first_config)
        )
        other = start_secirbot("--config", str(loser_config), "run")
        procs.append(other)
        assert other.wait(20) == 1
        assert "holds this mailbox (" in (other.stderr.read() if other.stderr else "")
        # ... but the crashed deployment itself, restarted on its own store, takes it over at once.
        third = start_secirbot("--config", str(winner_config), "run")
        procs.append(third)
        world.deliver(note("Late <late@example.net>"))
        deadline = time.monotonic() + 30
        while "late@example.net" not in rcpts(world) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert third.poll() is None
        third.send_signal(signal.SIGTERM)
        assert third.wait(10) == 0
    finally:
        for proc in procs:
            _stop(proc)
    # Once each. A mail the killed winner had sent but not yet marked sent goes out again from its store:
    # the same message (same Message-ID), which the recipient's client shows once.
    distinct = {(r.lower(), str(m.message["Message-ID"])) for m in world.sink.messages for r in m.rcpt_tos}
    assert sorted(r for r, _ in distinct) == ["late@example.net", "p0@example.net", "p1@example.net", "p2@example.net"]


def test_a_second_container_on_the_same_mailbox_refuses_to_start(world: World) -> None:
    """Two containers from the Dockerfile share nothing but the mailbox: each has its own /tmp and its own
    state volume. The second must still refuse (the brief: one instance per mailbox)."""
    first_config = world.write_config()
    second_config = world.root / "second.yaml"
    second_config.write_text(first_config.read_text().replace("var/secirbot.sqlite3", "var2/secirbot.sqlite3"))
    other_tmp = world.root / "container2-tmp"
    other_tmp.mkdir()
    first = start_secirbot("--config", str(first_config), "run")
    second = None
    try:
        world.deliver(note("Ann <ann@example.net>"))
        answered(world, 1)
        second = subprocess.Popen(
            [sys.executable, "-m", "secirbot", "--config", str(second_config), "run"],
            env=cli_env(TMPDIR=str(other_tmp)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        second_store = world.root / "var2" / "secirbot.sqlite3"
        # Either it refuses (and exits), or it gets as far as its main loop (its first heartbeat).
        wait_until(
            lambda: second.poll() is not None or _heartbeat(second_store),
            timeout=20,
            what="the second instance to refuse or to run",
        )
        assert second.poll() is not None, "a second instance runs on the same mailbox"
        assert second.returncode != 0
    finally:
        _stop(first)
        if second is not None:
            _stop(second)


def _heartbeat(path: Path) -> str | None:
    """The heartbeat in another process's store, read without ever writing (no migration, no lock)."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (HEARTBEAT_KEY,)).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None  # not created yet
    return row[0] if row else None


# --- due work at start ----------------------------------------------------------------------------


def test_the_scheduler_runs_a_reminder_that_fell_due_during_downtime_once_and_a_restart_does_not_repeat_it(
    world: World,
) -> None:
    world.rules["approvers"] = {"roles": ["administrative", "technical"], "ask_first": ["administrative"]}
    world.rules["digest"] = {"enabled": False}
    open_request(world)
    world.restart()
    world.clock.advance(days=3, hours=2)  # down over the day the first reminder was due

    for start in range(2):  # start, stop, start again
        world.restart()
        ticks: list[float] = []
        daemon = Daemon(world.bot())
        real_tick = daemon.tick

        def counted_tick(real_tick: Callable[[], None] = real_tick, ticks: list[float] = ticks) -> None:
            real_tick()
            ticks.append(time.monotonic())

        daemon.tick = counted_tick  # type: ignore[method-assign]
        thread = threading.Thread(target=daemon.run, daemon=True)
        thread.start()
        try:
            wait_until(lambda ticks=ticks: ticks, timeout=20, what="the scheduler's first tick")
            idle(daemon)
        finally:
            daemon.stop()
            thread.join(15)
        assert not thread.is_alive()
        sent = world.sink.messages
        assert [(m.rcpt_tos, subject(m)) for m in sent] == [
            (
                [NL_ADMIN],
                "Reminder: Approval needed: jan@registry.example asks to join the ccTLD security list for .nl [#1]",
            )
        ], f"after start {start + 1}"
