"""`mailman.rest_url` in every form Mailman's docs and mailmanclient write it, and `check --connect`'s probes
of Mailman's REST API (login, the list), against the real Mailman 3 of tests/test_mailman3.py.

The `secirbot check --connect` runs are real processes; the password is in the configuration file (the
subprocess sees no SECIRBOT_* variables) and must appear in no output.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from secirbot.config import ConfigError, load_config, normalize_rest_url
from secirbot.mailman_rest import MailmanRest
from secirbot.sandbox.mailman import Mailman3
from secirbot.sandbox.ports import free_port
from tests.flow import request
from tests.harness import BOT, LIST, SECRETARIAT, World
from tests.helpers_intake import secirbot
from tests.test_mailman3 import LIST_ID, approve, use_rest

FORMS = ["{base}", "{base}/", "{base}/3.1", "{base}/3.1/", " {base}/3.1// "]


# --- normalisation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    "base", ["http://127.0.0.1:8001", "https://lists.example.org/mailman/api", "http://[::1]:8001"]
)
def test_every_documented_form_of_rest_url_gives_the_same_base(form: str, base: str) -> None:
    assert normalize_rest_url(form.format(base=base)) == base


def write(tmp_path: Path, rest_url: str) -> Path:
    path = tmp_path / "secirbot.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "mailman": {
                    "dialect": "mailman3-rest",
                    "rest_url": rest_url,
                    "rest_user": "restadmin",
                    "rest_password": "s3cret-pw",
                }
            }
        )
    )
    return path


@pytest.mark.parametrize("form", FORMS)
def test_config_loading_normalises_rest_url(tmp_path: Path, form: str) -> None:
    config = load_config(write(tmp_path, form.format(base="http://localhost:8001")), environ={})
    assert config.mailman.rest_url == "http://localhost:8001"
    from_env = load_config(None, environ={"SECIRBOT_MAILMAN_REST_URL": form.format(base="http://h:8001")})
    assert from_env.mailman.rest_url == "http://h:8001"


@pytest.mark.parametrize(
    "url, said",
    [
        ("http://u:s3cret-pw@localhost:8001/3.0", "the bot speaks Mailman's REST API 3.1, not 3.0"),
        ("localhost:8001", "expected an http(s) URL"),
        ("http://localhost:99999/3.1", "not a valid URL"),
        ("http://localhost:8001/3.1?x=1", "expected the API's base URL, without ?query or #fragment"),
    ],
)
def test_a_rest_url_the_bot_cannot_use_is_a_config_error_with_file_and_line(
    tmp_path: Path, url: str, said: str
) -> None:
    path = write(tmp_path, url)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}:") and f"mailman.rest_url: {said}" in problem
    assert "s3cret-pw" not in problem


# --- against the real Mailman ------------------------------------------------------------------------


def connect(world: World, mailman3: Mailman3, rest_url: str, password: str | None = None) -> tuple[int, list[str]]:
    """`secirbot check --connect` as a process; its exit status and the Mailman lines it printed."""
    world.settings.update(
        {
            "mailman.rest_url": rest_url,
            "mailman.rest_user": mailman3.admin_user,
            "mailman.rest_password": password or mailman3.admin_pass,
        }
    )
    world.sink.deliver_locally(BOT, world.mailbox.append)  # the MX: the probe mail arrives, the others pass
    done = secirbot("--config", str(world.write_config()), "check", "--connect", "--timeout", "5")
    assert "Traceback" not in done.stderr, done.stderr
    for secret in (mailman3.admin_pass, password or mailman3.admin_pass):
        assert secret not in done.stdout + done.stderr
    # "ok    imap          logged in ..." -> "imap: ok: logged in ...", to read the Mailman lines below.
    lines = [f"{name}: {status}: {detail}" for status, name, detail in (x.split(None, 2) for x in probe_lines(done))]
    assert [x.split(":")[:2] for x in lines if not x.startswith("mailman-")] == [
        [name, " ok"] for name in ("imap", "imap-folders", "smtp", "probe-mail", "iana-whois", "iana-rdap", "dns")
    ], done.stdout
    return done.returncode, [line for line in lines if line.startswith("mailman-")]


def probe_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [x for x in done.stdout.splitlines() if x.startswith(("ok  ", "FAIL", "skip"))]


@pytest.mark.parametrize("suffix", ["", "/3.1", "/3.1/"])
def test_check_connect_logs_in_to_mailman_and_finds_the_list(world: World, mailman3: Mailman3, suffix: str) -> None:
    mailman3.create_list(LIST, "confirm", owners=[SECRETARIAT])
    code, lines = connect(world, mailman3, mailman3.rest_url + suffix)
    assert code == 0, lines
    assert lines[0].startswith(f"mailman-rest: ok: logged in to {mailman3.rest_url}/3.1/ as 'restadmin' (")
    assert lines[1:] == [f"mailman-list: ok: {LIST} exists (0 member(s))"]


def test_check_connect_says_wrong_password_missing_list_and_unreachable(world: World, mailman3: Mailman3) -> None:
    mailman3.create_list(LIST, "confirm", owners=[SECRETARIAT])
    code, lines = connect(world, mailman3, mailman3.rest_url + "/3.1", password="not-the-password")
    assert code == 1
    assert lines == [
        f"mailman-rest: FAIL: {mailman3.rest_url}/3.1/ refused the login of user 'restadmin' (HTTP 401): check "
        "mailman.rest_user and mailman.rest_password (or SECIRBOT_MAILMAN_REST_PASSWORD)",
        f"mailman-list: FAIL: {LIST} not checked: the REST login failed",
    ]

    mailman3.rest.delete(f"lists/{LIST_ID}")
    code, lines = connect(world, mailman3, mailman3.rest_url)
    assert code == 1
    assert lines[0].startswith("mailman-rest: ok: ")
    assert lines[1:] == [
        f"mailman-list: FAIL: Mailman has no list {LIST} (HTTP 404 for lists/{LIST_ID}): "
        "create it in Mailman or correct mailman.list"
    ]

    nowhere = f"http://127.0.0.1:{free_port()}"
    code, lines = connect(world, mailman3, nowhere + "/3.1/")
    assert code == 1
    assert lines == [
        f"mailman-rest: FAIL: Mailman REST GET {nowhere}/3.1/system/versions: ConnectionError: Connection "
        "refused: check mailman.rest_url and that Mailman's REST runner is up",
        f"mailman-list: FAIL: {LIST} not checked: Mailman's REST API is unreachable",
    ]


def test_the_rest_dialect_subscribes_with_rest_url_written_the_mailmanclient_way(
    world: World, mailman3: Mailman3
) -> None:
    mailman3.create_list(LIST, "confirm", owners=[SECRETARIAT])
    use_rest(world, mailman3, url=mailman3.rest_url + "/3.1/", dialect="mailman3-rest")
    assert world.bot().config.mailman.rest_url == mailman3.rest_url
    approve(world, "jan.url@registry.example")
    assert mailman3.roster(LIST_ID) == ["jan.url@registry.example"]
    assert request(world)["mailman_status"] == "member"
    assert MailmanRest(world.bot().config.mailman).is_member(LIST_ID, "jan.url@registry.example")
