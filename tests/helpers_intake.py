"""Helpers for the intake, outbox, config and CLI tests: the bot as a real subprocess (optionally crashing
at a chosen point with SIGKILL), human mail, and short reads of the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from secirbot.store import Store, utcnow
from tests.harness import BOT, REPO, World, new_message

# --- subprocesses ----------------------------------------------------------------------------------

# A real process that dies by SIGKILL at one point of `secirbot run --once`; production code is untouched:
# the script replaces one method and then calls the CLI's main() exactly as `secirbot` does.
_CRASH_SCRIPT = """\
import os, signal, sys
{patch}
import secirbot.cli
sys.exit(secirbot.cli.main(["--config", sys.argv[1], "run", "--once"]))
"""

# After the store committed the message (and its replies), before it is moved on the server.
KILL_ON_FILE = """\
import secirbot.mailbox
def _die(self, uids, where):
    if uids:
        os.kill(os.getpid(), signal.SIGKILL)
secirbot.mailbox.Mailbox.file = _die
"""

# Inside the message's transaction: its row and its reply are written, the COMMIT has not happened.
KILL_BEFORE_COMMIT = """\
import secirbot.store
_audit = secirbot.store.Store.audit
def _die(self, action, **kwargs):
    if action == "message-processed":
        os.kill(os.getpid(), signal.SIGKILL)
    return _audit(self, action, **kwargs)
secirbot.store.Store.audit = _die
"""

# After the SMTP server said 250 for a message, before the outbox commits "sent".
KILL_AFTER_SMTP_250 = """\
import secirbot.outbox
_record = secirbot.outbox.Outbox._record
def _die(self, row, attempt, report):
    if attempt.delivered:
        os.kill(os.getpid(), signal.SIGKILL)
    return _record(self, row, attempt, report)
secirbot.outbox.Outbox._record = _die
"""


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a `secirbot` subprocess: ours without SECIRBOT_* settings, the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECIRBOT_")}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def secirbot(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m secirbot ARGS` as a subprocess; returns the finished process with its output."""
    return subprocess.run(
        [sys.executable, "-m", "secirbot", *args],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_secirbot(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "secirbot", *args],
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_once_crashing(config: Path, patch: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`secirbot --config CONFIG run --once` in a subprocess that SIGKILLs itself where `patch` says."""
    script = _CRASH_SCRIPT.format(patch=patch)
    return subprocess.run(
        [sys.executable, "-c", script, str(config)],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_killed(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == -9, f"expected death by SIGKILL, got {done.returncode}\n{done.stderr}"


def sync_clock(world: World) -> None:
    """After a subprocess (which runs on the real clock) the world's clock must not lag behind it."""
    world.clock.moment = utcnow() + timedelta(seconds=1)


def wait_until(condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# --- mail ----------------------------------------------------------------------------------------


def note(
    sender: str,
    subject: str = "A question about the list",
    body: str = "Hello, who runs this list and how often is it used?\n",
    **headers: str,
) -> EmailMessage:
    """A human's message that is not a request: it earns one help reply a day."""
    return new_message(sender, BOT, subject, body, **headers)


def deep_multipart(sender: str = "Mallory <mallory@example.net>", depth: int = 1500) -> bytes:
    """A message whose multipart nesting is too deep for any MIME parser to read (a known DoS shape)."""
    head = (
        f"From: {sender}\r\nTo: {BOT}\r\nSubject: nested\r\nMessage-ID: <deep@example.net>\r\nMIME-Version: 1.0\r\n"
    ).encode()
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth))
    closing = b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth)))
    return head + opening + b"Content-Type: text/plain\r\n\r\nhi\r\n" + closing


# --- the store ----------------------------------------------------------------------------------


def rows(store: Store, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    return [dict(r) for r in store.all(sql, tuple(params))]


def audit(store: Store, action: str | None = None) -> list[dict[str, Any]]:
    """Audit rows (details decoded), oldest first; only `action` if given."""
    out = rows(store, "SELECT * FROM audit ORDER BY id")
    for row in out:
        row["details"] = json.loads(row["details"])
    return [r for r in out if action is None or r["action"] == action]


def rcpts(world: World) -> list[str]:
    """The recipients of every mail the sink accepted so far, in order, lower-cased."""
    return [r.lower() for m in world.sink.messages for r in m.rcpt_tos]
