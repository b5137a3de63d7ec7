"""`secirbot check --connect` against the real rig: Dovecot, an aiosmtpd sink that delivers the bot's mail
into that Dovecot mailbox (as the bot's MX would), and the IANA whois/RDAP/DNS stand-ins.

What the operator sees: one line per probe (`ok|FAIL|skip  name  detail`), exit status 1 when one failed,
a silent or absent server failing within the timeout while the others still report, the probe mail sent to
join+probe@ and deleted again, and never answered or taken as a request by a bot that sees it.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from secirbot.cli import main
from secirbot.config import load_config
from secirbot.probes import probe_message
from secirbot.sandbox.ports import free_port
from secirbot.store import Store
from tests.harness import BOT, REPO, World
from tests.helpers_intake import secirbot, start_secirbot, wait_until

PROBE_ADDRESS = "join+probe@lists.example.org"
LINE = re.compile(r"^(ok  |FAIL|skip)  (\S+)\s*  (.*)$")
ALL_OK = {
    "imap": "ok",
    "imap-folders": "ok",
    "smtp": "ok",
    "probe-mail": "ok",
    "mailman-rest": "skip",
    "mailman-list": "skip",
    "iana-whois": "ok",
    "iana-rdap": "ok",
    "dns": "ok",
}


def probe_lines(out: str) -> dict[str, tuple[str, str]]:
    """name -> (status, detail) of every probe line, in order; the other lines (ok:, store:, warning:) left out."""
    found = {}
    for text in out.splitlines():
        match = LINE.match(text)
        if match:
            found[match.group(2)] = (match.group(1).strip(), match.group(3))
    return found


def statuses(out: str) -> dict[str, str]:
    return {name: status for name, (status, _) in probe_lines(out).items()}


def check_connect(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str, float]:
    """`secirbot check --connect` in this process (timed without interpreter start-up)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    began = time.monotonic()
    try:
        code = main(["--verbose", "--config", str(config), "check", "--connect", *extra])  # debug: still no secret
    finally:
        elapsed = time.monotonic() - began
        # main() pointed the root logger at this test's captured stderr, which pytest closes afterwards.
        root.handlers[:], root.level = handlers, level
    captured = capsys.readouterr()
    return code, captured.out, captured.err, elapsed


def requests_in(world: World) -> list[str]:
    store = Store(world.root / "var" / "secirbot.sqlite3")
    try:
        return [r["requester"] for r in store.all("SELECT requester FROM requests")]
    finally:
        store.close()


@pytest.fixture
def delivering(world: World) -> World:
    """The world whose SMTP sink also delivers mail for the bot (and bot+anything@) into its mailbox."""
    world.sink.deliver_locally(BOT, world.mailbox.append)
    return world


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_every_probe_is_ok_against_the_rig_and_the_probe_mail_is_sent_to_bot_plus_probe_and_deleted(
    delivering: World,
) -> None:
    world = delivering
    done = secirbot("--config", str(world.write_config()), "check", "--connect", "--timeout", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = probe_lines(done.stdout)
    assert list(lines) == list(ALL_OK)  # one line each, in a fixed order
    assert statuses(done.stdout) == ALL_OK
    port = world.mailbox.server.imap_port
    assert lines["imap"][1].startswith(f"logged in to 127.0.0.1:{port} (none) as {world.mailbox.name} in ")
    assert lines["imap"][1].endswith("; IDLE")
    assert lines["imap-folders"][1] == "INBOX (0 waiting), Processed, Failed"
    assert lines["smtp"][1].startswith(f"127.0.0.1:{world.sink.port} (none), no login, in ")
    assert re.fullmatch(
        rf"{re.escape(PROBE_ADDRESS)} reached INBOX in \d+\.\d s \(deleted again\)", lines["probe-mail"][1]
    )
    assert lines["mailman-rest"][1] == "mailman.rest_url not set (dialect mailman3 sends its commands by mail)"
    assert lines["iana-whois"][1].startswith(f"{world.whois.endpoint}: the record of .nl with ")
    assert lines["iana-rdap"][1].startswith(f"{world.rdap.base_url}: the record of .nl with ")
    assert lines["dns"][1].startswith(f"resolver 127.0.0.1:{world.dns.port} answered nl. NS: ")
    assert "warning: authentication.authserv_id" not in done.stdout  # the world's rules set one

    (probe,) = world.sent()
    assert (probe.mail_from, probe.rcpt_tos) == (BOT, [PROBE_ADDRESS])
    assert probe.message["X-Secirbot-Loop"] == BOT and probe.message["X-Secirbot-Probe"]
    assert world.mailbox.uids("INBOX") == []  # arrived, and deleted again
    assert world.mailbox.uids("Processed") == []


def test_a_silent_server_and_a_closed_port_fail_within_the_timeout_and_the_other_probes_still_report(
    world: World, silent_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    world.settings.update({"imap.port": silent_port, "iana.whois": f"127.0.0.1:{free_port()}"})
    code, out, err, elapsed = check_connect(world.write_config(), capsys, "--timeout", "2")
    assert code == 1
    assert elapsed < 2 + 1.5, elapsed  # the silent IMAP server costs its timeout once, in parallel
    lines = probe_lines(out)
    assert statuses(out) == {
        **ALL_OK,
        "imap": "FAIL",
        "imap-folders": "FAIL",
        "probe-mail": "FAIL",
        "iana-whois": "FAIL",
    }
    assert lines["imap"][1].startswith(f"IMAP 127.0.0.1:{silent_port}: ")
    assert "timed out" in lines["imap"][1].lower()
    assert lines["imap-folders"][1] == "not checked: no login"
    assert lines["probe-mail"][1] == "not sent: no IMAP login to find it with"
    assert "Connection refused" in lines["iana-whois"][1]
    assert world.sent() == []  # no probe mail that could not be looked for and deleted
    assert "Traceback" not in err


def test_a_probe_mail_that_never_arrives_fails_naming_the_address_and_what_to_check(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # The world's sink does not deliver to the mailbox: like an MX that drops bot+anything@.
    code, out, _, elapsed = check_connect(world.write_config(), capsys, "--timeout", "1")
    assert code == 1
    assert elapsed < 3 * 1 + 2, elapsed
    status, detail = probe_lines(out)["probe-mail"]
    assert status == "FAIL"
    assert detail.startswith(f"sent to {PROBE_ADDRESS} through 127.0.0.1, but it is not in INBOX after 3 s: ")
    assert "join+TOKEN@lists.example.org" in detail and "recipient delimiter" in detail
    assert [m.rcpt_tos for m in world.sent()] == [[PROBE_ADDRESS]]


def test_the_probe_mail_is_never_answered_nor_taken_as_a_request_by_the_bot(world: World) -> None:
    config = load_config(world.write_config())
    world.deliver(probe_message(config, "0123456789abcdef"))  # as if the bot fetched it before the probe
    world.run_once()
    assert world.sent() == []
    assert requests_in(world) == []
    store = world.bot().store
    (row,) = store.all("SELECT kind, detail FROM messages")
    assert (row["kind"], row["detail"]) == ("automated", "own-mail")
    assert world.mailbox.uids("INBOX") == []  # filed, like any mail the bot has seen


def test_check_connect_beside_a_running_bot_finds_its_probe_mail_and_the_bot_stays_silent(delivering: World) -> None:
    world = delivering
    config = str(world.write_config())
    bot = start_secirbot("--config", config, "run")
    try:
        wait_until(lambda: world.mailbox.folders().count("Processed") == 1, timeout=20, what="the bot to log in")
        for _ in range(3):  # a bot on IDLE may take the probe mail first: the probe looks in Processed too
            done = secirbot("--config", config, "check", "--connect", "--timeout", "2")
            assert done.returncode == 0, done.stdout + done.stderr
            assert re.match(r"\S+ reached (INBOX|Processed) in ", probe_lines(done.stdout)["probe-mail"][1])
        time.sleep(1)  # the bot would have answered by now
    finally:
        bot.terminate()
        bot.wait(10)
    assert [m.rcpt_tos for m in world.sent()] == [[PROBE_ADDRESS]] * 3  # the probes only: no answer
    assert requests_in(world) == []
    assert world.mailbox.uids("INBOX") == [] and world.mailbox.uids("Processed") == []


def test_without_authserv_id_it_warns_what_that_means_and_names_the_id_the_probe_mail_arrived_with(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    def mx(raw: bytes) -> object:  # our receiving server: it writes Authentication-Results on top
        return world.mailbox.append(b"Authentication-Results: mx.lists.example.org; dmarc=none\r\n" + raw)

    world.sink.deliver_locally(BOT, mx)
    world.rules["authentication"] = {"authserv_id": None, "require": "adaptive"}
    code, out, _, _ = check_connect(world.write_config(), capsys, "--timeout", "2")
    assert code == 0, out
    (warning,) = [
        x
        for x in out.splitlines()
        if x.startswith("warning: authentication.authserv_id is not set, so no Authentication-Results header")
    ]
    assert warning == (
        "warning: authentication.authserv_id is not set, so no Authentication-Results header on inbound mail is "
        "trusted (anyone can write one) and a DMARC result is never read from it: approvers whose domain publishes "
        "DMARC p=quarantine or p=reject (or whose policy cannot be looked up) are accepted only with an aligned DKIM "
        "signature secirbot verifies itself, and refused without one; the others' replies decide on their From "
        "address and reply token alone. The probe mail arrived with Authentication-Results from "
        "mx.lists.example.org: if that is your own receiving server, and it removes inbound copies claiming that "
        "id, set authentication.authserv_id to it in rules.yaml"
    )


def test_in_sandbox_mode_the_mail_probes_are_skipped_and_the_others_still_run(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world.write_config()  # for its rules.yaml
    config = tmp_path / "secirbot.yaml"
    config.write_text(
        f"rules: '{world.root / 'rules.yaml'}'\ntemplates: '{REPO / 'templates'}'\n"
        f"iana: {{whois: '{world.whois.endpoint}', rdap: '{world.rdap.base_url}'}}\n"
        f"dns: {{nameservers: ['127.0.0.1'], port: {world.dns.port}}}\n",
        encoding="utf-8",
    )
    code, out, _, _ = check_connect(config, capsys, "--timeout", "2")
    assert code == 0, out
    skipped = "no imap.host configured (sandbox mode): `secirbot run` starts a local mailbox instead"
    lines = probe_lines(out)
    for name in ("imap", "imap-folders", "smtp", "probe-mail"):
        assert lines[name] == ("skip", skipped)
    assert {n: s for n, (s, _) in lines.items() if n.startswith(("iana", "dns"))} == {
        "iana-whois": "ok",
        "iana-rdap": "ok",
        "dns": "ok",
    }
    assert "warning: authentication.authserv_id" not in out  # the sandbox's mail is all local


@pytest.mark.parametrize("value", ["0", "-3", "soon"])
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_a_usage_error(world: World, value: str) -> None:
    done = secirbot("--config", str(world.write_config()), "check", "--connect", "--timeout", value)
    assert done.returncode == 2
    assert f"expected a whole number of seconds, at least 1, got '{value}'" in done.stderr
    assert world.sent() == []
