"""The rules of `rules.yaml` (and `secirbot.yaml`) that tie one key to another. An operator who copied the
shipped file (as `secirbot init` does) and changed one key must get a file that loads, or an error naming
both keys, where each is set, and how to resolve it; the shipped file explains each such rule beside its keys.

Through `secirbot check` as a real process, as an operator meets them, and through load_rules/load_config
for what the bot then does with the file."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from secirbot.config import ConfigError, load_config
from secirbot.rules import load_rules
from tests.harness import REPO
from tests.helpers_intake import cli_env

SHIPPED = REPO / "rules.yaml"


def copy_of_shipped(folder: Path, old: str, new: str) -> Path:
    """The shipped rules.yaml with one line edited, as an operator edits their copy."""
    text = SHIPPED.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path = folder / "rules.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def line_of(path: Path, start: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if line.lstrip().startswith(start))


def check(folder: Path) -> subprocess.CompletedProcess[str]:
    shutil.copytree(REPO / "templates", folder / "templates")
    (folder / "secirbot.yaml").write_text(f"rules: {folder / 'rules.yaml'}\ntemplates: {folder / 'templates'}\n")
    return subprocess.run(
        [sys.executable, "-m", "secirbot", "--config", str(folder / "secirbot.yaml"), "check"],
        cwd=folder,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    return caught.value.problems


def test_a_copy_of_the_shipped_rules_that_narrows_only_the_roles_loads_and_asks_those_roles(tmp_path: Path) -> None:
    path = copy_of_shipped(tmp_path, "roles: [administrative, technical]", "roles: [technical]")
    rules = load_rules(path)
    assert rules.approvers.roles == ("technical",)
    assert rules.approvers.ask_first == ("technical",)  # left out: every role that may approve
    done = check(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok" in done.stdout


def test_after_secirbot_init_editing_only_the_roles_passes_check(tmp_path: Path) -> None:
    site = tmp_path / "site"

    def secirbot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "secirbot", *args],
            cwd=tmp_path,
            env=cli_env(SECIRBOT_IMAP_PASSWORD="secret"),
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert secirbot("init", str(site)).returncode == 0
    rules = site / "rules.yaml"
    text = rules.read_text(encoding="utf-8")
    rules.write_text(text.replace("roles: [administrative, technical]", "roles: [administrative]"), encoding="utf-8")
    done = secirbot("--config", str(site / "secirbot.yaml"), "check")
    assert done.returncode == 0, done.stdout + done.stderr
    ok = f"ok: {site / 'secirbot.yaml'}, {rules}, "
    assert any(line.startswith(ok) for line in done.stdout.splitlines()), done.stdout


def test_ask_first_naming_a_role_roles_no_longer_allows_says_both_keys_and_the_fixes(tmp_path: Path) -> None:
    path = copy_of_shipped(
        tmp_path,
        "roles: [administrative, technical]",
        "roles: [administrative]\n  ask_first: [administrative, technical]",
    )
    roles_line, ask_line = line_of(path, "roles:"), line_of(path, "ask_first:")
    done = check(tmp_path)
    assert done.returncode == 2
    (message,) = [ln for ln in done.stderr.splitlines() if "ask_first" in ln]
    assert message.startswith(f"  {path}:{ask_line}: approvers.ask_first: names technical, ")
    assert f"which approvers.roles (line {roles_line}: administrative) does not allow to approve" in message
    assert "add them to approvers.roles, take them out of ask_first, or leave ask_first out" in message


def test_ask_first_against_the_default_roles_says_so(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("pilot: {cctlds: [nl]}\napprovers:\n  ask_first: []\n")
    (message,) = problems(tmp_path / "rules.yaml")
    assert message == (
        f"{tmp_path / 'rules.yaml'}:3: approvers.ask_first: at least one role must be asked: name one, or leave"
        " ask_first out to ask every role in approvers.roles"
    )


@pytest.mark.parametrize("require", ["dmarc", "dkim"])
def test_a_strict_require_without_authserv_id_names_both_keys(tmp_path: Path, require: str) -> None:
    path = copy_of_shipped(tmp_path, "require: adaptive", f"require: {require}")
    (message,) = problems(path)
    assert message.startswith(
        f"{path}:{line_of(path, 'authserv_id:')}: authentication.authserv_id: required because"
        f" authentication.require is {require} (line {line_of(path, 'require:')}):"
    )
    assert "set it to the authserv-id your receiving server writes, or use require: adaptive" in message
    fixed = copy_of_shipped(tmp_path, "authserv_id: null", "authserv_id: mx.lists.example.org")
    fixed.write_text(fixed.read_text().replace("require: adaptive", f"require: {require}"))
    assert load_rules(fixed).authentication.require == require


def test_retry_first_longer_than_retry_max_names_both_and_their_values(tmp_path: Path) -> None:
    path = copy_of_shipped(tmp_path, "retry_first: 1m", "retry_first: 2h")
    (message,) = problems(path)
    assert message.startswith(
        f"{path}:{line_of(path, 'retry_first:')}: outbox.retry_first: must not be longer than outbox.retry_max"
        f" (line {line_of(path, 'retry_max:')}: 1h):"
    )
    assert message.endswith("shorten retry_first or lengthen retry_max")


def test_an_enabled_pilot_without_cctlds_says_how_to_open_or_fill_it(tmp_path: Path) -> None:
    path = copy_of_shipped(tmp_path, "cctlds: [nl, dk, ca]", "cctlds: []")
    (message,) = problems(path)
    assert message == (
        f"{path}:{line_of(path, 'cctlds:')}: pilot.cctlds: empty while pilot.enabled is true"
        f" (line {line_of(path, 'enabled:')}): every request would be refused; list the invited ccTLDs here,"
        " or set pilot.enabled: false to admit every ccTLD"
    )
    open_list = copy_of_shipped(tmp_path, "enabled: true\n  cctlds: [nl, dk, ca]", "enabled: false\n  cctlds: []")
    assert load_rules(open_list).pilot.enabled is False


def test_the_shipped_rules_explain_every_cross_key_rule_beside_its_keys() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    explained = re.findall(r"#.*[Cc]ross-key rule: (.*)", text)
    assert len(explained) == 4, explained
    assert any("`cctlds` must name at least one" in e for e in explained)
    assert any("must also be in `roles`" in e for e in explained)
    assert any("required when `require` below is dmarc or dkim" in e for e in explained)
    assert any("not below retry_first" in e for e in explained)
    shipped = load_rules(SHIPPED)
    assert shipped.approvers.ask_first == shipped.approvers.roles


# --- the same kind of rule in secirbot.yaml ------------------------------------------------------------------


def test_a_real_mailbox_without_login_or_smtp_names_imap_host_and_the_way_back_to_the_sandbox(tmp_path: Path) -> None:
    path = tmp_path / "secirbot.yaml"
    path.write_text("addresses: {bot: join@lists.example.org}\nimap:\n  host: mail.example.org\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    found = {p.split(": ", 2)[1]: p for p in caught.value.problems}
    assert set(found) == {"imap.username", "imap.password", "smtp.host"}
    for message in found.values():
        assert "required because imap.host is set (line 3), so this is the real mailbox" in message
        assert message.endswith("or remove imap.host to run on the local sandbox")
    assert "set SECIRBOT_IMAP_PASSWORD (or imap.password)" in found["imap.password"]
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"SECIRBOT_IMAP_HOST": "mx.example.org", "SECIRBOT_IMAP_USERNAME": "join"})
    assert all("imap.host is set (environment SECIRBOT_IMAP_HOST)" in p for p in caught.value.problems)


def test_the_rest_dialect_without_its_keys_names_the_dialect_and_the_alternative(tmp_path: Path) -> None:
    path = tmp_path / "secirbot.yaml"
    path.write_text("mailman:\n  list: secir@lists.example.org\n  dialect: mailman3-rest\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    found = {p.split(": ", 2)[1]: p for p in caught.value.problems}
    assert set(found) == {"mailman.rest_url", "mailman.rest_user", "mailman.rest_password"}
    for message in found.values():
        assert message.startswith(f"{path}:")
        assert "required because mailman.dialect is mailman3-rest (line 3)" in message
        assert message.endswith("or choose dialect mailman3 to send the e-mail command instead")
    assert "SECIRBOT_MAILMAN_REST_PASSWORD" in found["mailman.rest_password"]
