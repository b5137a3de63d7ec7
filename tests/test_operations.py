"""What the Secretariat and the operator run: `secirbot invite`, `report`, `export`, `check --health`,
`--log-format json`, the Docker image's entrypoint and health check (outside Docker: the same commands with
the Dockerfile's environment, the "mounted" configuration in a temp dir), and `secirbot demo`.

Commands run as real processes (`python -m secirbot`, as the installed `secirbot` script does); the mail
they cause is read from the SMTP sink, their state from the store.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from secirbot.health import HEARTBEAT_KEY
from secirbot.store import Store, iso, utcnow
from tests.flow import NL_ADMIN, NL_TECH, by_rcpt, flat, open_request, request, summary
from tests.harness import REPO, World, reply_to
from tests.helpers_intake import cli_env, note, secirbot, wait_until

INVITATION = "Invitation: the ccTLD security list, for the staff of {}"
MX_ADMIN = "adm-iana@nic.mx"
EXPORT_COLUMNS = [
    "request_id",
    "email",
    "name",
    "cctld",
    "cctld_unicode",
    "approved_by",
    "approved_at",
    "approved_via",
    "iana_snapshot_id",
    "iana_source",
    "iana_fetched_at",
    "mailman_status",
]


def store_of(world: World) -> Store:
    return Store(world.root / "var" / "secirbot.sqlite3")


def members(world: World) -> None:
    """Four ccTLDs with history: .nl has a member (approved by mail), .рф a member approved by the
    Secretariat on the command line, .jo an open request, .fi a denied one."""
    nl = open_request(world)
    world.deliver(reply_to(nl.approvals[NL_ADMIN], f"Roelof Meijer <{NL_ADMIN}>", "APPROVE"))
    world.run_once()
    open_request(world, sender="Ivan Petrov <ivan@cctld.example>", subject_line="subscribe .рф")
    world.request(sender="Ahmad Saleh <ahmad@registry.example>", subject="subscribe .jo")
    world.request(sender="Mikko Virtanen <mikko@registry.example>", subject="subscribe .fi")
    world.run_once()
    fi = world.approval_requests(world.sent())["firootadmin@traficom.fi"]
    world.deliver(reply_to(fi, "Traficom <firootadmin@traficom.fi>", "DENY"))
    world.run_once()
    world.restart()
    done = secirbot("--config", str(world.config_file), "approve", "2", "--reason", "known to us")
    assert done.returncode == 0, done.stderr
    assert [request(world, i)["state"] for i in (1, 2, 3, 4)] == ["approved", "approved", "pending", "denied"]
    world.sent()


# --- invite -----------------------------------------------------------------------------------------


def test_invite_mails_each_administrative_contact_an_invitation_and_records_it(world: World) -> None:
    config = world.write_config()
    done = secirbot("--config", str(config), "invite", "nl", ".FI", "mx")
    assert done.returncode == 0, done.stderr
    sent = world.sent()
    assert summary(sent) == sorted(
        [
            (NL_ADMIN, INVITATION.format(".nl")),
            ("firootadmin@traficom.fi", INVITATION.format(".fi")),
            (MX_ADMIN, INVITATION.format(".mx")),
        ]
    )
    assert NL_TECH not in by_rcpt(sent)  # administrative contacts only
    invitation = flat(by_rcpt(sent)[NL_ADMIN][0])
    assert "lists you as the administrative contact of .nl (SIDN" in invitation
    assert "writes to join@lists.example.org with a subject such as subscribe .nl" in invitation
    assert "secir@lists.example.org" in invitation
    assert done.stdout.splitlines() == [
        ".nl: invitation queued for admin@sidn.nl",
        ".fi: invitation queued for firootadmin@traficom.fi",
        f".mx: invitation queued for {MX_ADMIN}",
    ]
    store = store_of(world)
    try:
        rows = store.all("SELECT cctld, recipients, snapshot_id FROM invitations ORDER BY id")
        assert [(r["cctld"], json.loads(r["recipients"])) for r in rows] == [
            ("nl", [NL_ADMIN]),
            ("fi", ["firootadmin@traficom.fi"]),
            ("mx", [MX_ADMIN]),
        ]
        assert all(
            store.one("SELECT source FROM iana_snapshots WHERE id = ?", (r["snapshot_id"],))["source"] == "whois"
            for r in rows
        )
    finally:
        store.close()


@pytest.mark.parametrize(
    "name, code, said",
    [
        ("com", 3, ".com is not a country-code TLD"),
        ("gt", 4, ".gt: cannot resolve the IANA contacts now"),  # IANA answers with its error text
    ],
)
def test_invite_refuses_what_it_cannot_invite_and_sends_nothing(world: World, name: str, code: int, said: str) -> None:
    done = secirbot("--config", str(world.write_config()), "invite", name)
    assert done.returncode == code
    assert said in done.stderr
    assert code != 4 or "nothing was sent" in done.stderr
    assert world.sent() == []


@pytest.mark.parametrize("dry_run", [False, True])
def test_invite_refuses_a_cctld_outside_the_pilot_with_the_reason_and_invites_the_others(
    world: World, dry_run: bool
) -> None:
    config = str(world.write_config())  # the pilot: nl, fi, рф, jo, gt, mx; .is is a ccTLD IANA knows
    done = secirbot("--config", config, "invite", *(["--dry-run"] if dry_run else []), "is", "nl")
    assert done.returncode == 1
    assert (
        ".is: not invited: it is not in rules.yaml pilot.cctlds, so the bot would refuse its staff's requests; "
        "add it to pilot.cctlds first (and reload: SIGHUP), then invite"
    ) in done.stderr.splitlines()
    nl = ".nl: would mail invitation.txt to" if dry_run else ".nl: invitation queued for admin@sidn.nl"
    assert done.stdout.startswith(nl)
    sent = world.sent()
    assert "jens@isnic.is" not in by_rcpt(sent)
    assert summary(sent) == ([] if dry_run else [(NL_ADMIN, INVITATION.format(".nl"))])
    store = store_of(world)
    try:
        invited = [r["cctld"] for r in store.all("SELECT cctld FROM invitations ORDER BY id")]
        assert invited == ([] if dry_run else ["nl"])
        # Refused before IANA is asked: no snapshot of .is was taken either.
        assert store.all("SELECT id FROM iana_snapshots WHERE tld = 'is'") == []
    finally:
        store.close()

    # With the pilot over (rules.yaml pilot.enabled: false) every ccTLD may be invited.
    world.rules["pilot"]["enabled"] = False
    opened = secirbot("--config", str(world.write_config()), "invite", "is")
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.splitlines() == [".is: invitation queued for jens@isnic.is"]
    assert summary(world.sent()) == [("jens@isnic.is", INVITATION.format(".is"))]


# --- report and export --------------------------------------------------------------------------------


def test_report_shows_invitations_requests_members_and_not_joined_and_export_writes_the_roster(world: World) -> None:
    members(world)
    invited = secirbot("--config", str(world.config_file), "invite", "nl", "fi")
    assert invited.returncode == 0, invited.stderr

    done = secirbot("--config", str(world.config_file), "report", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rows = {r["cctld"]: r for r in report["cctlds"]}
    assert sorted(rows) == ["fi", "gt", "jo", "mx", "nl", "xn--p1ai"]  # the pilot, as rules.yaml says
    picked = {
        k: {f: rows[k][f] for f in ("invited", "requests", "open", "denied", "members")}
        for k in ("nl", "fi", "jo", "xn--p1ai")
    }
    assert picked == {
        "nl": {"invited": [NL_ADMIN], "requests": 1, "open": 0, "denied": 0, "members": 1},
        "fi": {"invited": ["firootadmin@traficom.fi"], "requests": 1, "open": 0, "denied": 1, "members": 0},
        "jo": {"invited": [], "requests": 1, "open": 1, "denied": 0, "members": 0},
        "xn--p1ai": {"invited": [], "requests": 1, "open": 0, "denied": 0, "members": 1},
    }
    assert rows["nl"]["invited_at"] and rows["fi"]["invited_at"] and rows["jo"]["invited_at"] is None
    assert report["not_joined"] == [".fi", ".gt", ".jo", ".mx"]

    text = secirbot("--config", str(world.config_file), "report")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    nl_line = next(ln for ln in lines if ln.startswith(".nl "))
    # invited when; 1 member; never re-vetted
    assert rows["nl"]["invited_at"] in nl_line and nl_line.split()[-2:] == ["1", "-"]
    assert next(ln for ln in lines if ln.startswith(".jo ")).split()[1:] == ["-", "1", "1", "0", "0", "0", "-"]
    assert lines[-1] == "not yet joined: .fi, .gt, .jo, .mx"

    # --- export: the same store's members, with how each was vetted
    nl, ru = request(world, 1), request(world, 2)

    as_csv = secirbot("--config", str(world.config_file), "export", "--format", "csv")
    out_file = world.root / "roster.json"
    as_json = secirbot("--config", str(world.config_file), "export", "--format", "json", "--output", str(out_file))
    assert (as_csv.returncode, as_json.returncode) == (0, 0), as_csv.stderr + as_json.stderr

    table = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert as_csv.stdout.splitlines()[0] == ",".join(EXPORT_COLUMNS)
    assert [r["email"] for r in table] == ["jan@registry.example", "ivan@cctld.example"]  # members only
    jan, ivan = table
    assert {
        k: jan[k]
        for k in ("name", "cctld", "cctld_unicode", "approved_by", "approved_at", "approved_via", "iana_source")
    } == {
        "name": "Jan Jansen",
        "cctld": "nl",
        "cctld_unicode": "nl",
        "approved_by": NL_ADMIN,
        "approved_at": "2026-11-26T09:00:00Z",
        "approved_via": "mail",
        "iana_source": "whois",
    }
    assert jan["iana_snapshot_id"] == str(nl["snapshot_id"]) and jan["iana_fetched_at"] == nl["snapshot"]["fetched_at"]
    assert (ivan["cctld"], ivan["cctld_unicode"], ivan["approved_via"]) == ("xn--p1ai", "рф", "cli")
    assert ivan["approved_by"].startswith("cli:") and ivan["iana_snapshot_id"] == str(ru["snapshot_id"])

    roster = json.loads(out_file.read_text(encoding="utf-8"))
    assert [list(r) for r in roster] == [EXPORT_COLUMNS, EXPORT_COLUMNS]
    assert [{k: str(v) for k, v in r.items()} for r in roster] == table  # the same roster in both formats
    assert roster[0]["request_id"] == 1 and roster[0]["iana_snapshot_id"] == nl["snapshot_id"]
    assert "2 member(s) written to" in as_json.stderr and as_json.stdout == ""


# --- logs --------------------------------------------------------------------------------------------


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as a JSON object; fails on the first line that is not one."""
    out = []
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}")
        assert isinstance(item, dict) and {"time", "level", "logger", "message"} <= set(item), line
        out.append(item)
    return out


def test_log_format_json_run_once_writes_nothing_but_json_lines(world: World) -> None:
    world.deliver(note("Ann <ann@example.net>"))
    done = secirbot("--log-format", "json", "--config", str(world.write_config()), "run", "--once")
    assert done.returncode == 0
    json_lines(done.stderr)


# --- the container: entrypoint and health check --------------------------------------------------------


def dockerfile() -> dict[str, Any]:
    """ENV, WORKDIR, ENTRYPOINT, CMD and the HEALTHCHECK command of the Dockerfile."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV\s+(.*)$", text, re.M):
        env.update(dict(part.split("=", 1) for part in shlex.split(line)))
    return {
        "env": env,
        "workdir": re.search(r"^WORKDIR\s+(\S+)", text, re.M).group(1),  # type: ignore[union-attr]
        "entrypoint": json.loads(re.search(r"^ENTRYPOINT\s+(\[.*\])", text, re.M).group(1)),  # type: ignore[union-attr]
        "cmd": json.loads(re.search(r"^CMD\s+(\[.*\])", text, re.M).group(1)),  # type: ignore[union-attr]
        "healthcheck": json.loads(re.search(r"^HEALTHCHECK\s.*?\bCMD\s+(\[.*\])", text, re.M).group(1)),  # type: ignore[union-attr]
    }


class Container:
    """The image's filesystem layout in a temp dir: /etc/secirbot (the read-only config mount),
    /var/lib/secirbot (the state volume) and the WORKDIR with the templates the image copies there."""

    def __init__(self, world: World):
        self.spec = dockerfile()
        base = world.root / "container"
        self.dirs = {
            "/etc/secirbot": base / "etc-secirbot",
            "/var/lib/secirbot": base / "var-lib-secirbot",
            self.spec["workdir"]: base / "opt-secirbot",
        }
        for path in self.dirs.values():
            path.mkdir(parents=True)
        (self.dirs[self.spec["workdir"]] / "templates").symlink_to(REPO / "templates")
        # The mounted configuration: what an operator writes. No password (it comes from the environment),
        # no store/rules/templates paths (the image's ENV sets them).
        data = yaml.safe_load(world.write_config().read_text())
        for key in ("store", "rules", "templates"):
            data.pop(key)
        data["imap"].pop("password")
        (self.dirs["/etc/secirbot"] / "secirbot.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
        (self.dirs["/etc/secirbot"] / "rules.yaml").write_text(
            (world.root / "rules.yaml").read_text(), encoding="utf-8"
        )
        self.secrets = {"SECIRBOT_IMAP_PASSWORD": world.mailbox.password}

    def path(self, container_path: str) -> Path:
        for prefix, host in self.dirs.items():
            if container_path == prefix or container_path.startswith(prefix + "/"):
                return host / container_path[len(prefix) :].lstrip("/")
        raise AssertionError(f"{container_path} is not inside a mapped folder")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: (str(self.path(v)) if v.startswith("/") else v) for k, v in self.spec["env"].items()}
        env.update(self.secrets)
        env.update(extra)
        return cli_env(**env)

    @staticmethod
    def argv(command: list[str]) -> list[str]:
        assert command[0] == "secirbot"
        return [sys.executable, "-m", "secirbot", *command[1:]]

    def start(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(self.spec["entrypoint"] + self.spec["cmd"]),
            env=self.env(),
            cwd=self.dirs[self.spec["workdir"]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def health(self, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(self.spec["healthcheck"]),
            env=self.env(**extra),
            cwd=self.dirs[self.spec["workdir"]],
            capture_output=True,
            text=True,
            timeout=30,
        )


def test_the_dockerfile_runs_the_bot_in_json_with_a_health_check() -> None:
    spec = dockerfile()
    assert spec["entrypoint"] + spec["cmd"] == ["secirbot", "--log-format", "json", "run"]
    assert spec["healthcheck"] == ["secirbot", "check", "--health"]
    assert spec["env"]["SECIRBOT_CONFIG"].startswith("/etc/secirbot/")
    assert spec["env"]["SECIRBOT_STORE_PATH"].startswith("/var/lib/secirbot/")


def test_the_container_entrypoint_serves_mail_logs_json_and_is_healthy_while_it_runs(world: World) -> None:
    box = Container(world)
    store = box.path(box.spec["env"]["SECIRBOT_STORE_PATH"])
    unstarted = box.health()
    assert unstarted.returncode == 1 and unstarted.stdout.startswith("unhealthy: no store at")

    proc = box.start()
    try:
        wait_until(lambda: box.health().returncode == 0, timeout=30, what="the health check to pass")
        world.request()
        world.sink.wait_for(4, timeout=20)  # it serves mail
        healthy = box.health()
        assert healthy.returncode == 0 and healthy.stdout.startswith("healthy: heartbeat"), healthy.stdout
        proc.send_signal(signal.SIGTERM)  # docker stop
        stopped = time.monotonic()
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - stopped < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert sorted(world.approval_requests(world.sent())) == [NL_ADMIN, NL_TECH]
    assert store.exists()  # the state is on the volume
    assert not list(box.dirs["/etc/secirbot"].glob("*.sqlite3*"))  # and not in the config mount

    events = json_lines(stderr)  # only JSON, one event a line
    messages = [e["message"] for e in events]
    assert any(m.startswith("connected to 127.0.0.1:") and m.endswith("(IDLE)") for m in messages)
    assert "message uid=1 from jan@registry.example: request/subscribe -> request-opened" in messages
    assert messages[-1] == "stopped"

    # A bot that stopped beating (hung, or gone) is unhealthy once its heartbeat is five minutes old.
    s = Store(store)
    try:
        with s.transaction():
            s.set_meta(HEARTBEAT_KEY, iso(utcnow() - timedelta(minutes=10)))
    finally:
        s.close()
    stale = box.health()
    assert stale.returncode == 1 and stale.stdout.startswith("unhealthy: last heartbeat 60"), stale.stdout
    # No store at all (a volume not mounted): unhealthy, and no store is created by looking.
    missing = box.health(SECIRBOT_STORE_PATH=str(box.dirs["/var/lib/secirbot"] / "nowhere" / "secirbot.sqlite3"))
    assert missing.returncode == 1 and missing.stdout.startswith("unhealthy: no store at")
    assert not (box.dirs["/var/lib/secirbot"] / "nowhere").exists()


# --- demo ----------------------------------------------------------------------------------------------


def test_demo_runs_with_nothing_configured_and_shows_the_whole_procedure(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "secirbot", "demo"],
        cwd=empty,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # The approval request to an IANA contact of .dk, with its own reply address ...
    approval = re.search(r"---- mail \d+: bot -> (\S+@punktum\.dk) -+\n(.*?)\n---- mail", out, re.S)
    assert approval is not None
    assert "Subject: Approval needed: mette.hansen@security.punktum.example asks to join" in approval.group(2)
    assert re.search(r"Reply-To: join\+\S+@lists\.example\.org", approval.group(2))
    # ... the contact's APPROVE reply ...
    reply = re.search(r"---- mail \d+: approver -> bot -+\n(.*?)\n---- mail", out, re.S)
    assert reply is not None and "\nAPPROVE\n" in reply.group(1)
    # ... and the Mailman command it caused.
    command = re.search(r"---- mail \d+: bot -> secir-request@lists\.example\.org -+\n(.*?)\n(?:----|\n)", out, re.S)
    assert command is not None and "join address=mette.hansen@security.punktum.example" in out
    assert out.index("approver -> bot") < out.index("join address=mette.hansen@security.punktum.example")
    assert "DECIDED" in out and not list(empty.iterdir())  # nothing left behind in the cwd
