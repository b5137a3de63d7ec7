"""The configuration: YAML file, environment overrides, errors that name file, line and dotted key without
ever showing a secret, paths relative to the file, and `secirbot check` (with `--connect` against the real
Dovecot and SMTP sink, over plain IMAP, STARTTLS and implicit TLS; the other probes of `--connect` are in
tests/test_probes.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from secirbot.cli import main
from secirbot.config import ConfigError, find_config_file, load_config
from secirbot.sandbox.dovecot import Dovecot, MailUser
from secirbot.sandbox.iana_servers import DnsServer, RdapServer, WhoisServer
from secirbot.sandbox.ports import free_ports
from secirbot.sandbox.smtp_sink import SmtpSink
from tests.harness import REPO, default_rules
from tests.helpers_intake import secirbot

SECRET = "hunter2-Sup3r-s3cret"


@pytest.fixture(autouse=True)
def _no_secirbot_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SECIRBOT_"):
            monkeypatch.delenv(name)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def bot_config(folder: Path, text: str = "", rules: dict[str, Any] | None = None) -> Path:
    """A config file in `folder` (with its rules.yaml and the repo's templates) plus `text` appended."""
    write(folder / "rules.yaml", yaml.safe_dump(rules if rules is not None else default_rules(), allow_unicode=True))
    return write(folder / "secirbot.yaml", f"templates: {REPO / 'templates'}\n{text}")


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {})
    return caught.value.problems


MAIL = """\
smtp:
  host: smtp.example.net
imap:
  host: mail.example.net
  username: bot
  password: from-the-file
"""  # imap last, so that a test can append "  key: value" lines to it


# --- environment overrides -------------------------------------------------------------------------


def test_every_key_can_be_overridden_from_the_environment(tmp_path: Path) -> None:
    path = bot_config(tmp_path, MAIL)
    config = load_config(
        path,
        environ={
            "SECIRBOT_IMAP_PASSWORD": SECRET,
            "SECIRBOT_IMAP_PORT": "1143",
            "SECIRBOT_IMAP_SECURITY": "starttls",
            "SECIRBOT_IMAP_TLS_VERIFY": "false",
            "SECIRBOT_SMTP_HOST": "relay.example.net",
            "SECIRBOT_ADDRESSES_SECRETARIAT": "sec@example.com",
            "SECIRBOT_DNS_NAMESERVERS": "192.0.2.1, 192.0.2.2",
            "SECIRBOT_STORE_PATH": "data/bot.sqlite3",
            "SECIRBOT_RULES": "policy.yaml",
            "UNRELATED": "ignored",
        },
    )
    assert config.imap.password == SECRET
    assert (config.imap.port, config.imap.security, config.imap.tls_verify) == (1143, "starttls", False)
    assert config.imap.host == "mail.example.net"  # what is not overridden stays as in the file
    assert config.smtp.host == "relay.example.net"
    assert config.addresses.secretariat == "sec@example.com"
    assert config.dns.nameservers == ("192.0.2.1", "192.0.2.2")
    assert config.store.path == tmp_path / "data" / "bot.sqlite3"
    assert config.rules == tmp_path / "policy.yaml"
    assert SECRET not in repr(config)


def test_the_password_may_come_from_the_environment_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = bot_config(tmp_path, MAIL.replace("  password: from-the-file\n", ""))
    (problem,) = problems(path)
    assert f"{path}:4: imap.password" in problem and "SECIRBOT_IMAP_PASSWORD" in problem

    monkeypatch.setenv("SECIRBOT_IMAP_PASSWORD", SECRET)  # read from the process environment by default
    assert load_config(path).imap.password == SECRET


def test_an_unknown_environment_key_is_named_without_its_value(tmp_path: Path) -> None:
    path = bot_config(tmp_path, MAIL)
    (problem,) = problems(path, {"SECIRBOT_IMAP_PASWORD": SECRET})
    assert "SECIRBOT_IMAP_PASWORD" in problem and "imap has no key 'pasword'" in problem
    assert SECRET not in problem


def test_a_bad_value_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    path = bot_config(tmp_path, MAIL.replace("  host: smtp.example.net\n", "  host: smtp.example.net\n  port: 587\n"))
    (problem,) = problems(path, {"SECIRBOT_SMTP_PORT": "submission"})
    assert "SECIRBOT_SMTP_PORT" in problem


# --- where the configuration comes from ---------------------------------------------------------------


def test_the_file_is_config_option_else_environment_else_local_secirbot_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    local = bot_config(tmp_path / "cwd", "bogus_local: 1\n")
    from_env = bot_config(tmp_path / "env", "bogus_env: 1\n")
    explicit = bot_config(tmp_path / "explicit", "bogus_explicit: 1\n")
    monkeypatch.chdir(local.parent)

    def checked(*args: str) -> str:
        assert main([*args, "check"]) == 2
        return capsys.readouterr().err

    assert "bogus_local" in checked()
    assert find_config_file(None) == Path("secirbot.yaml")
    monkeypatch.setenv("SECIRBOT_CONFIG", str(from_env))
    assert "bogus_env" in checked()
    assert "bogus_explicit" in checked("--config", str(explicit))


# --- errors name file, line and dotted key ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("imap:\n  host: mail.example.net\n  hots: mail2.example.net\n", 5, "unknown key 'imap.hots'"),
        ("imapp:\n  host: mail.example.net\n", 3, "unknown key 'imapp'"),
        ("smtp:\n  port: submission\n", 4, "smtp.port: expected an integer, got 'submission'"),
        ("imap:\n  batch_size: -1\n", 4, "imap.batch_size: expected a number >= 0"),
        ("imap:\n  tls_verify: perhaps\n", 4, "imap.tls_verify: expected true or false, got 'perhaps'"),
        ("smtp:\n  security: ssl\n", 4, "smtp.security: expected one of tls | starttls | none, got 'ssl'"),
        ("mailman:\n  dialect: mailman4\n", 4, "mailman.dialect: expected one of mailman3 | mailman2 | mailman3-rest"),
        ("addresses:\n  bot: join+x@lists.example.org\n", 4, "addresses.bot: must not contain '+'"),
        ("dns:\n  nameservers: {a: 1}\n", 4, "dns.nameservers: expected a list"),
    ],
    ids=[
        "unknown-key",
        "unknown-section",
        "bad-int",
        "negative",
        "bad-bool",
        "bad-enum",
        "bad-dialect",
        "plus-address",
        "bad-list",
    ],
)
def test_an_error_names_the_file_the_line_and_the_dotted_key(
    tmp_path: Path, text: str, line: int, expected: str
) -> None:
    path = bot_config(tmp_path, "# comment\n" + text)
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:{line}: "), problem
    assert expected in problem


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = bot_config(tmp_path, "imap:\n  port: x\n  security: ssl\nsmtp:\n  colour: blue\n")
    found = problems(path)
    assert [p.split(": ", 1)[0] for p in found] == [f"{path}:3", f"{path}:4", f"{path}:6"]


def test_not_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = bot_config(tmp_path, "imap:\n  host: [unclosed\n  port: 993\n")
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:") and "not valid YAML" in problem


@pytest.mark.parametrize(
    "text",
    [
        f"imap:\n  password:\n    - {SECRET}\n",
        f"imap:\n  password: {{nested: {SECRET}}}\n",
        f"smtp:\n  password: [{SECRET}]\n",
        f"mailman:\n  rest_password: [{SECRET}]\n",
        f"imap:\n  pasword: {SECRET}\n",
        f'imap:\n  password: "{SECRET}\n',
    ],
    ids=["list", "mapping", "smtp", "mailman-rest", "misspelt-key", "unterminated-quote"],
)
def test_a_password_is_never_shown_in_an_error(tmp_path: Path, text: str) -> None:
    path = bot_config(tmp_path, text)
    found = problems(path)
    assert found and all(p.startswith(f"{path}:") for p in found), found
    assert SECRET not in "\n".join(found)
    if "password:" in text and '"' not in text:
        assert "got <hidden>" in "\n".join(found)


# --- paths ----------------------------------------------------------------------------------------


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "etc" / "secirbot"
    write(folder / "certs" / "ca.pem", "not checked here\n")
    path = bot_config(
        folder, MAIL + "  ca_file: certs/ca.pem\nstore:\n  path: var/db.sqlite3\nrules: policy/rules.yaml\n"
    )
    path.rename(folder / "bot.yaml")
    monkeypatch.chdir(tmp_path)

    config = load_config(Path("etc/secirbot/bot.yaml"), environ={})

    assert config.imap.ca_file == folder / "certs" / "ca.pem"
    assert config.store.path == folder / "var" / "db.sqlite3"
    assert config.rules == folder / "policy" / "rules.yaml"
    assert config.templates == REPO / "templates"  # absolute stays absolute
    defaults = load_config(bot_config(tmp_path / "other"), environ={})
    assert defaults.store.path == tmp_path / "other" / "var" / "secirbot.sqlite3"
    assert defaults.rules == tmp_path / "other" / "rules.yaml"


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    path = bot_config(tmp_path, MAIL + "  ca_file: certs/ca.pem\n")
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:8: imap.ca_file: file not found: {tmp_path / 'certs' / 'ca.pem'}")


# --- security: none ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "warned"),
    [
        ("mail.example.net", True),
        ("192.0.2.7", True),
        ("127.0.0.1", False),
        ("localhost", False),
        ("::1", False),
    ],
)
def test_security_none_warns_unless_the_host_is_loopback(tmp_path: Path, host: str, warned: bool) -> None:
    path = bot_config(tmp_path, MAIL.replace("mail.example.net", host) + "  security: none\n")
    warnings = [w for w in load_config(path, environ={}).warnings() if w.startswith("imap.security")]
    assert bool(warnings) is warned
    if warned:
        assert host in warnings[0] and "loopback" in warnings[0]


def test_check_prints_the_plaintext_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = bot_config(tmp_path, MAIL.replace("smtp.example.net", "smtp.example.net\n  security: none"))
    assert "  security: none\nimap:" in path.read_text()
    assert main(["--config", str(path), "check"]) == 0
    out = capsys.readouterr().out
    assert "warning: smtp.security is 'none' for smtp.example.net" in out and "loopback" in out
    assert "imap.security" not in out


# --- secirbot check ---------------------------------------------------------------------------------

BROKEN = "imap:\n  port: nine\nsmtp:\n  security: ssl\n"


def test_check_of_a_good_configuration_says_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = bot_config(tmp_path)
    assert main(["--config", str(path), "check"]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {path}")


def test_check_prints_each_problem_with_file_and_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = bot_config(tmp_path, BROKEN)
    assert main(["--config", str(path), "check"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3: imap.port: expected an integer, got 'nine'" in err
    assert f"{path}:5: smtp.security: expected one of tls | starttls | none, got 'ssl'" in err


def test_check_as_a_process_prints_the_problems_and_exits_2(tmp_path: Path) -> None:
    path = bot_config(tmp_path, BROKEN)
    done = secirbot("--config", str(path), "check")
    assert done.returncode == 2
    assert f"{path}:3: imap.port" in done.stderr and f"{path}:5: smtp.security" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("rules_text", "line", "expected"),
    [
        (
            "pilot:\n  enabled: true\n  cctlds: [nl]\napprovers:\n  roles: [billing]\n  ask_first: [billing]\n",
            5,
            "approvers.roles: unknown role(s) billing",
        ),
        ("pilot:\n  cctlds: [nl]\nrequests:\n  seats: 3\n", 4, "unknown key 'requests.seats'"),
        ("pilot:\n  cctlds: [nl]\noutbox:\n  retry_first: soon\n", 4, "outbox.retry_first: expected a duration"),
    ],
    ids=["bad-role", "unknown-key", "bad-duration"],
)
def test_check_names_rules_yaml_and_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rules_text: str, line: int, expected: str
) -> None:
    path = bot_config(tmp_path)
    write(tmp_path / "rules.yaml", rules_text)
    assert main(["--config", str(path), "check"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'rules.yaml'}:{line}: {expected}" in err


# --- secirbot check --connect against the real servers ---------------------------------------------------


@pytest.fixture
def iana(_whois_server: WhoisServer, _rdap_server: RdapServer, _dns_server: DnsServer) -> dict[str, Any]:
    """The IANA and DNS settings of the local stand-ins, so that those probes of `--connect` pass."""
    return {
        "iana": {"whois": _whois_server.endpoint, "rdap": _rdap_server.base_url},
        "dns": {"nameservers": ["127.0.0.1"], "port": _dns_server.port},
    }


def connect_config(
    folder: Path,
    mailbox: MailUser,
    sink: SmtpSink,
    iana: dict[str, Any],
    imap: dict[str, Any] | None = None,
    smtp: dict[str, Any] | None = None,
) -> Path:
    server = mailbox.server
    settings = {
        "imap": {
            "host": server.host,
            "port": server.imap_port,
            "security": "none",
            "username": mailbox.name,
            "password": mailbox.password,
            **(imap or {}),
        },
        "smtp": {"host": sink.host, "port": sink.port, "security": "none", **(smtp or {})},
        **iana,
    }
    # The sink is also the bot's MX, so that the probe mail to join+probe@ arrives in the mailbox.
    sink.deliver_locally("join@lists.example.org", mailbox.append)
    return bot_config(folder, yaml.safe_dump(settings))


def check_connect(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--verbose", "--config", str(path), "check", "--connect", "--timeout", "2"])  # debug: no secret
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def probe(out: str, name: str) -> tuple[str, str]:
    """(status, detail) of the `--connect` line of probe `name` ("ok    imap          logged in ...")."""
    (found,) = [line.split(None, 2)[::2] for line in out.splitlines() if line[6:].startswith(f"{name} ")]
    return found[0], found[1]


def test_check_connect_logs_in_to_imap_and_smtp(
    tmp_path: Path, mailbox: MailUser, smtp_sink: SmtpSink, iana: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = check_connect(connect_config(tmp_path, mailbox, smtp_sink, iana), capsys)
    assert code == 0, out
    assert probe(out, "imap")[0] == "ok"
    assert probe(out, "imap")[1].startswith(
        f"logged in to 127.0.0.1:{mailbox.server.imap_port} (none) as {mailbox.name}"
    )
    assert probe(out, "smtp")[0] == "ok" and probe(out, "smtp")[1].startswith(f"127.0.0.1:{smtp_sink.port} (none)")
    assert probe(out, "probe-mail")[0] == "ok"


def test_check_connect_with_a_wrong_imap_password_says_login_failed_without_the_password(
    tmp_path: Path, mailbox: MailUser, smtp_sink: SmtpSink, iana: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = connect_config(tmp_path, mailbox, smtp_sink, iana, imap={"password": SECRET})
    code, out, err = check_connect(path, capsys)
    assert code == 1
    status, line = probe(out, "imap")
    assert status == "FAIL" and "login" in line.lower() and mailbox.name in line
    assert probe(out, "smtp")[0] == "ok"
    assert SECRET not in out + err


def test_check_connect_with_a_wrong_smtp_password_says_login_failed_without_the_password(
    tmp_path: Path, mailbox: MailUser, iana: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    with SmtpSink(credentials=("relay-user", "the-right-one")) as sink:
        path = connect_config(
            tmp_path, mailbox, sink, iana, smtp={"username": "relay-user", "password": SECRET, "timeout_seconds": 2}
        )
        code, out, err = check_connect(path, capsys)
    assert code == 1
    status, line = probe(out, "smtp")
    assert status == "FAIL" and "login" in line.lower() and "535" in line
    assert probe(out, "probe-mail")[0] == "FAIL"
    assert SECRET not in out + err


@pytest.mark.parametrize(
    ("imap", "ok", "expected"),
    [
        ({"security": "tls", "port": "imaps", "ca_file": "CA"}, True, "logged in to"),
        ({"security": "starttls", "ca_file": "CA"}, True, "logged in to"),
        ({"security": "tls", "port": "imaps"}, False, "certificate verify failed"),
        ({"security": "starttls"}, False, "certificate verify failed"),
        ({"security": "tls", "port": "imaps", "tls_verify": False}, True, "logged in to"),
    ],
    ids=[
        "tls-with-ca-file",
        "starttls-with-ca-file",
        "tls-default-verification",
        "starttls-default-verification",
        "tls-verify-false",
    ],
)
def test_imap_tls_verifies_the_certificate_unless_told_not_to(
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: MailUser,
    smtp_sink: SmtpSink,
    iana: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    imap: dict[str, Any],
    ok: bool,
    expected: str,
) -> None:
    imap = dict(imap)
    if imap.get("port") == "imaps":
        imap["port"] = dovecot.imaps_port
    if imap.get("ca_file") == "CA":
        imap["ca_file"] = str(dovecot.ca_file)
    code, out, _ = check_connect(connect_config(tmp_path, mailbox, smtp_sink, iana, imap=imap), capsys)
    status, line = probe(out, "imap")
    assert expected in line and status == ("ok" if ok else "FAIL")
    assert code == (0 if ok else 1), out
    if imap.get("tls_verify") is False:
        assert "warning: imap.tls_verify is false" in out


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_smtp_tls_verifies_the_certificate(
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox: MailUser,
    iana: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    security: str,
) -> None:
    certs = dovecot.certs
    with SmtpSink(security=security, tls_cert=certs.cert_file, tls_key=certs.key_file) as sink:  # type: ignore[arg-type]
        verified = connect_config(
            tmp_path / "a", mailbox, sink, iana, smtp={"security": security, "ca_file": str(certs.ca_file)}
        )
        default = connect_config(tmp_path / "b", mailbox, sink, iana, smtp={"security": security})
        code, out, _ = check_connect(verified, capsys)
        assert code == 0, out
        assert probe(out, "smtp")[0] == "ok" and probe(out, "smtp")[1].startswith(f"127.0.0.1:{sink.port} ({security})")
        assert probe(out, "probe-mail")[0] == "ok"  # sent over that TLS session's twin
        code, out, _ = check_connect(default, capsys)
    assert code == 1
    status, line = probe(out, "smtp")
    assert status == "FAIL" and "certificate verify failed" in line


def test_check_connect_says_which_server_cannot_be_reached(
    tmp_path: Path, mailbox: MailUser, iana: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    closed_imap, closed_smtp = free_ports(2)  # nothing listens there
    sink = SmtpSink()  # never started
    path = connect_config(
        tmp_path,
        mailbox,
        sink,
        iana,
        imap={"port": closed_imap, "timeout_seconds": 2},
        smtp={"port": closed_smtp, "timeout_seconds": 2},
    )
    code, out, _ = check_connect(path, capsys)
    assert code == 1
    assert probe(out, "imap")[0] == "FAIL" and probe(out, "smtp")[0] == "FAIL"
    assert probe(out, "imap")[1].startswith(f"IMAP 127.0.0.1:{closed_imap}")
    assert probe(out, "smtp")[1].startswith(f"SMTP 127.0.0.1:{closed_smtp}")
    assert out.count("refused") >= 2


def test_narrowing_the_roles_without_ask_first_asks_those_roles(tmp_path: Path) -> None:
    from secirbot.rules import load_rules

    (tmp_path / "rules.yaml").write_text("pilot: {cctlds: [nl]}\napprovers:\n  roles: [administrative]\n")
    rules = load_rules(tmp_path / "rules.yaml")
    assert (rules.approvers.roles, rules.approvers.ask_first) == (("administrative",), ("administrative",))
    (tmp_path / "rules.yaml").write_text(
        "pilot: {cctlds: [nl]}\napprovers:\n  roles: [administrative]\n  ask_first: [technical]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_rules(tmp_path / "rules.yaml")
    assert "leave ask_first out to ask every role in approvers.roles" in str(caught.value.problems)


def test_a_mistyped_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    (tmp_path / "secirbot.yaml").write_text("imap:\n  hots: mail.example.org\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "secirbot.yaml", environ={})
    assert "unknown key 'imap.hots'; did you mean 'host'?" in " ".join(caught.value.problems)
