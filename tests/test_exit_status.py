"""Exit statuses as scripts and supervisors see them: `run --once` with the SMTP server down (75, mail kept
queued, `check --health` says why), and the README's table of every command's exit statuses.

Commands run as real processes against the world's real Dovecot and SMTP sink; the sink is stopped to
take SMTP away (connection refused on its port) and started again on the same port.
"""

from __future__ import annotations

import json
import re
import time

from secirbot import cli
from secirbot.store import Store
from tests.harness import REPO, World
from tests.helpers_intake import secirbot

EXIT_TEMPFAIL = 75


def queued_mail(world: World) -> list[dict[str, object]]:
    store = Store(world.root / "var" / "secirbot.sqlite3", readonly=True)
    try:
        return [
            dict(r)
            for r in store.all(
                "SELECT state, attempts, last_error, created_at FROM outbox WHERE kind = 'mail' ORDER BY id"
            )
        ]
    finally:
        store.close()


def last_delivery(world: World) -> dict[str, str]:
    store = Store(world.root / "var" / "secirbot.sqlite3", readonly=True)
    try:
        return json.loads(store.get_meta("last_delivery") or "null")
    finally:
        store.close()


def test_run_once_with_smtp_down_exits_75_keeps_the_mail_and_health_says_smtp_unreachable(world: World) -> None:
    world.rules["outbox"]["retry_first"] = "1s"  # so that a retry falls due within the test
    config = str(world.write_config())
    world.request()
    world.sink.stop()

    first = secirbot("--config", config, "run", "--once")
    assert first.returncode == EXIT_TEMPFAIL, first.stderr
    mail = queued_mail(world)
    assert len(mail) == 4  # acknowledgement, two approvals, the copy
    assert {(m["state"], m["attempts"]) for m in mail} == {("queued", 1)}
    assert all("Connection refused" in str(m["last_error"]) for m in mail)
    oldest = min(str(m["created_at"]) for m in mail)
    last = last_delivery(world)
    assert last["outcome"] == "smtp-unreachable" and last["since"] == last["at"]
    refused = f"SMTP 127.0.0.1:{world.sink.port}: [Errno 111] Connection refused"
    said = (
        f"SMTP unreachable, 4 mail(s) queued since {oldest} (no connection since {last['since']}; "
        f"last attempt {last['at']}: {refused})"
    )
    assert first.stderr.splitlines()[-1].endswith(f"ERROR secirbot.cli: {said}")
    assert world.mailbox.uids("INBOX") == [] and len(world.mailbox.uids("Processed")) == 1  # the request was read

    health = secirbot("--config", config, "check", "--health")
    assert (health.returncode, health.stdout) == (1, f"unhealthy: {said}\n")

    # Still down at the next run: 75 again, and the outage still dates from the first failed attempt.
    time.sleep(2.1)
    second = secirbot("--config", config, "run", "--once")
    assert second.returncode == EXIT_TEMPFAIL, second.stderr
    assert {(m["state"], m["attempts"]) for m in queued_mail(world)} == {("queued", 2)}
    again = last_delivery(world)
    assert again["since"] == last["since"] and again["at"] > last["at"]

    # SMTP is back: the queued mail goes out, the status is 0 and the bot is healthy (the heartbeat is
    # the one run --once wrote: nothing else ran).
    world.sink.start()
    time.sleep(3.1)  # the second retry waits 2 s
    third = secirbot("--config", config, "run", "--once")
    assert third.returncode == 0, third.stderr
    assert len(world.sink.messages) == 4
    assert {m["state"] for m in queued_mail(world)} == {"sent"}
    assert last_delivery(world)["outcome"] == "connected"
    healthy = secirbot("--config", config, "check", "--health")
    assert healthy.returncode == 0
    assert re.fullmatch(r"healthy: heartbeat \d+ s ago, 0 mail\(s\) queued\n", healthy.stdout), healthy.stdout


def test_run_once_with_smtp_down_but_nothing_to_send_exits_0_and_is_healthy(world: World) -> None:
    config = str(world.write_config())
    world.sink.stop()
    done = secirbot("--config", config, "run", "--once")
    assert done.returncode == 0, done.stderr
    assert last_delivery(world) is None  # no connection was needed, none was tried
    health = secirbot("--config", config, "check", "--health")
    assert health.returncode == 0 and health.stdout.startswith("healthy: heartbeat "), health.stdout


def readme_exit_table() -> dict[str, str]:
    """README "Operating it", table "Exit status": command -> its cell of statuses."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Operating it", 1)[1].split("\n## ", 1)[0]
    table = section.split("| command | exit status |", 1)[1].split("\n\n", 1)[0]
    rows = [line.strip("|").split("|") for line in table.strip().splitlines()[1:]]
    return {cells[0].strip(): cells[1].strip() for cells in rows}


def test_the_readme_documents_every_exit_status_of_every_command() -> None:
    table = readme_exit_table()
    documented = " ".join(table)
    for command in cli.COMMANDS:
        assert f"`{command}" in documented or f" {command}" in documented, command
    codes = {int(code) for cell in table.values() for code in re.findall(r"\*\*(\d+)\*\*", cell)}
    defined = {value for name, value in vars(cli).items() if name.startswith("EXIT_") and isinstance(value, int)}
    assert codes == defined | {0, 1}
    assert "**75**" in table["`run --once`"] and "**5**" in table["`run --once`"]
    assert re.findall(r"\*\*(\d+)\*\*", table["`check --health`"]) == ["0", "1"]
