"""The bot against a real GNU Mailman 3.3.10 (secirbot/sandbox/mailman.py): subscription by e-mail command
and by REST, the loop of Mailman's own mail back into the bot's mailbox, and the list's other door.

One Mailman serves the whole session (started by the `mailman3` fixture, ~5 s; stopped at the end). Each
test gets a fresh `secir@lists.example.org` (the list is deleted and created again) and requesters of its
own, so the state Mailman keeps per address (verified or not) cannot leak between tests.

The mail paths are those of a real site:

    bot --SMTP--> world's sink --(Bridge.relay: the MTA)--LMTP--> Mailman
    Mailman --SMTP--> rig's sink --+--> join@lists.example.org: IMAP APPEND to the bot's Dovecot mailbox
                                   +--> secir-owner@, secir-confirm+TOKEN@ ...: LMTP back into Mailman
                                   +--> everybody else (requester, Secretariat): captured for the asserts

and the test plays the requester (who confirms by replying to Mailman's confirmation mail, as a person
does) and the walk-in who tries the list's own -join address.

Without a Mailman venv the tests are skipped, unless SECIRBOT_TEST_REQUIRE_MAILMAN=1 (CI): then they fail.
"""

from __future__ import annotations

import email.utils
import http.server
import json
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from secirbot import cli, mailman
from secirbot.mailman import CommandOutcome
from secirbot.sandbox.mailman import Mailman3, Outgoing
from secirbot.sandbox.ports import LOOPBACK, free_port
from secirbot.sandbox.smtp_sink import Captured
from tests.clients import client_reply
from tests.flow import ADMIN_FROM, NL_ADMIN, audit_actions, flat, open_request, request, subject
from tests.harness import BOT, LIST, SECRETARIAT, World, new_message

LIST_DOMAIN = "lists.example.org"
LIST_ID = "secir.lists.example.org"
REQUEST_ADDRESS = "secir-request@lists.example.org"
CONFIRM_SUBJECT = "Your confirmation is needed to join the secir@lists.example.org mailing list."
WELCOME_SUBJECT = 'Welcome to the "Secir" mailing list'
PASSWORD_ENV = "SECIRBOT_MAILMAN_REST_PASSWORD"
SITE_OWNER = "postmaster@example.org"  # Mailman3(site_owner=...) default


# --- the Mailman server, once per session ---------------------------------------------------------------


# The `mailman3` session fixture is in tests/conftest.py: one Mailman for every file that needs it.


# The rig's own variables are SECIRBOT_TEST_*: no configuration section is called 'test'.
def test_the_rig_variables_are_not_configuration() -> None:
    from secirbot.config import load_config

    environ = {
        "SECIRBOT_TEST_MAILMAN_VENV": "/opt/mailman-venv",
        "SECIRBOT_TEST_REQUIRE_MAILMAN": "1",
        "SECIRBOT_TEST_ANYTHING_ELSE": "x",
    }
    assert load_config(None, environ=environ).mailman.dialect == "mailman3"


# --- the MTA between the bot and Mailman ----------------------------------------------------------------


@dataclass
class Bridge:
    """The per-test wiring: the bot's mail for Mailman goes in over LMTP, Mailman's mail for the bot is
    appended to the bot's mailbox, and the rest of Mailman's mail is captured."""

    world: World
    mailman: Mailman3
    relayed: list[Captured] = field(default_factory=list)

    def relay(self) -> list[Captured]:
        """Everything the bot sent since the last call; what is addressed to Mailman's domain (but not to
        the bot itself) is delivered to Mailman over LMTP, as the site's MTA would."""
        sent = self.world.sent()
        for captured in sent:
            to_mailman = [
                r for r in captured.rcpt_tos if r.rpartition("@")[2].lower() == LIST_DOMAIN and r.lower() != BOT
            ]
            if to_mailman:
                self.mailman.lmtp_deliver(captured.data, captured.mail_from, to_mailman)
                self.relayed.append(captured)
        return sent

    def mailman_sent(self, to: str, subject_start: str, count: int = 1, timeout: float = 30.0) -> list[Outgoing]:
        """Wait for Mailman's mail to `to` whose Subject starts so."""
        return self.mailman.sink.wait_for(
            lambda o: (
                to.lower() in [r.lower() for r in o.rcpt_tos]
                and " ".join(str(o.message["Subject"]).split()).startswith(subject_start)
            ),
            count,
            timeout,
        )

    def confirm_as(self, address: str) -> str:
        """The subscriber answers Mailman's confirmation mail the way a person does: "Reply" in their mail
        client (to its From, secir-confirm+TOKEN@), quoting it. Returns the token."""
        confirmation = self.mailman_sent(address, CONFIRM_SUBJECT)[-1].message
        confirm_address = email.utils.parseaddr(str(confirmation["From"]))[1]
        token = re.fullmatch(r"secir-confirm\+([0-9a-f]+)@lists\.example\.org", confirm_address)
        assert token, confirm_address
        quoted = "\n".join("> " + line for line in confirmation.get_content().splitlines())
        reply = new_message(
            address,
            confirm_address,
            "Re: " + " ".join(str(confirmation["Subject"]).split()),
            f"Yes, that is me.\n\n{quoted}\n",
            In_Reply_To=str(confirmation["Message-ID"]),
        )
        self.mailman.lmtp_deliver(reply)
        return token.group(1)

    def walk_in(self, address: str, name: str) -> None:
        """Somebody who never wrote to the bot asks Mailman directly (its -join address)."""
        self.mailman.lmtp_deliver(new_message(f"{name} <{address}>", f"secir-join@{LIST_DOMAIN}", "join", "join\n"))


@pytest.fixture
def bridge(world: World, mailman3: Mailman3) -> Iterator[Bridge]:
    mailman3.sink.clear()
    mailman3.route(BOT, world.deliver)
    try:
        yield Bridge(world, mailman3)
    finally:
        mailman3.unroute()


def use_rest(world: World, mailman3: Mailman3, url: str | None = None, dialect: str | None = None) -> None:
    """Give the bot Mailman's REST API; the password comes from the environment, not the file."""
    world.settings.update({"mailman.rest_url": url or mailman3.rest_url, "mailman.rest_user": mailman3.admin_user})
    if dialect:
        world.settings["mailman.dialect"] = dialect
    world.environ[PASSWORD_ENV] = mailman3.admin_pass
    world.restart()


def approve(world: World, requester: str, name: str = "Jan Jansen") -> None:
    """A request from `requester` for .nl, approved by the .nl administrative contact; outbox delivered."""
    opened = open_request(world, sender=f"{name} <{requester}>")
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"))
    world.run_once()
    assert request(world)["state"] == "approved"


def mailman_rows(world: World) -> list[tuple[str, str, int | None, str]]:
    """(kind, detail, request_id, subject) of every message in the bot's store that Mailman sent: from one
    of the list's addresses, or from the site owner (Mailman's OwnerNotification uses that as From)."""
    rows = world.bot().store.all("SELECT kind, detail, request_id, subject, from_addr FROM messages ORDER BY id")

    def from_mailman(sender: str) -> bool:
        return sender == SITE_OWNER or (sender.endswith("@" + LIST_DOMAIN) and sender != BOT)

    return [
        (r["kind"], r["detail"], r["request_id"], " ".join((r["subject"] or "").split()))
        for r in rows
        if from_mailman((r["from_addr"] or "").lower())
    ]


def run_show(world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """`secirbot show 1` as the Secretariat types it (its command function: main() would also set up
    logging for a whole process)."""
    for name in [n for n in os.environ if n.startswith("SECIRBOT_")]:
        monkeypatch.delenv(name)  # the CLI must see only this world's SECIRBOT_* variables
    for name, value in world.environ.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    args = cli.build_parser().parse_args(["--config", str(world.config_file), "show", "1"])
    assert cli.COMMANDS["show"](args) == 0
    return capsys.readouterr().out


def assert_no_answer(sent: list[Captured], mailman_mail: list[Outgoing]) -> None:
    """The bot answered none of Mailman's mails: nothing to a Mailman address, nothing threaded to them."""
    ids = {str(o.message["Message-ID"]) for o in mailman_mail}
    for captured in sent:
        assert not [r for r in captured.rcpt_tos if r.lower().endswith("@" + LIST_DOMAIN)], subject(captured)
        assert str(captured.message["In-Reply-To"] or "") not in ids, subject(captured)


# --- e-mail dialect -------------------------------------------------------------------------------------


def test_email_dialect_whole_procedure_on_a_confirm_list(
    world: World,
    mailman3: Mailman3,
    bridge: Bridge,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """request -> approval -> `join address=...` reaches Mailman -> Mailman's confirmation reaches the
    requester -> the requester confirms -> member (REST roster); Mailman's results mail comes back to the
    bot's mailbox, is linked to the request and answered by nobody."""
    requester = "jan.confirm@registry.example"
    mailman3.create_list(LIST, "confirm", owners=[SECRETARIAT])
    approve(world, requester)
    sent = bridge.relay()
    commands = [c for c in sent if c.rcpt_tos == [REQUEST_ADDRESS]]
    assert len(commands) == 1
    command = commands[0].message
    assert command.get_content().splitlines() == [f"join address={requester} digest=no", "end"]

    # Mailman: a confirmation to the requester (not to the bot), a results mail to the bot.
    confirmation = bridge.mailman_sent(requester, CONFIRM_SUBJECT)[0]
    assert confirmation.rcpt_tos == [requester] and confirmation.captured_only == [requester]
    pending = mailman3.pending(LIST_ID)
    assert [(p["email"], p["token_owner"]) for p in pending] == [(requester, "subscriber")]
    assert str(confirmation.message["From"]) == f"secir-confirm+{pending[0]['token']}@{LIST_DOMAIN}"
    results = bridge.mailman_sent(BOT, "The results of your email commands")[0]
    assert results.routed == (BOT,) and results.mail_from == f"secir-bounces@{LIST_DOMAIN}"
    text = results.message.get_content()
    assert f"Confirmation email sent to {requester}" in text
    # Mailman quotes our Message-ID (a folded header, quoted as folded): how the bot links the results.
    assert str(command["Message-ID"]).strip() in text and "Message-ID:" in text
    assert "No such command" not in text and "- Unprocessed:" not in text and "- Ignored:" not in text
    assert mailman.read_results(text) == CommandOutcome("confirmation-sent", f"Confirmation email sent to {requester}")
    assert mailman3.roster(LIST_ID) == []

    token = bridge.confirm_as(requester)
    assert token == pending[0]["token"]
    mailman3.wait_until(lambda: mailman3.roster(LIST_ID) == [requester], what="requester in the roster")
    bridge.mailman_sent(requester, WELCOME_SUBJECT)
    assert mailman3.pending(LIST_ID) == []

    # The bot reads Mailman's results: MAILMAN, linked to request 1, acknowledged, no answer, no request.
    report = world.run_once()
    assert (report.processed, report.failed) == (1, 0)
    assert mailman_rows(world) == [("mailman", "command-results", 1, "The results of your email commands")]
    data = request(world)
    assert data["mailman_status"] == "acknowledged" and data["mailman_acknowledged"]
    assert audit_actions(world).count("mailman-acknowledged") == 1
    assert world.bot().store.one("SELECT COUNT(*) AS n FROM requests")["n"] == 1
    after = world.sent()
    assert after == []
    assert "(Mailman acknowledged)" in run_show(world, capsys, monkeypatch)
    # Everything Mailman sent, and where it went.
    everything = sorted((o.rcpt_tos[0], " ".join(str(o.message["Subject"]).split())) for o in mailman3.sink.messages)
    assert everything == sorted(
        [
            (BOT, "The results of your email commands"),
            (requester, CONFIRM_SUBJECT),
            (requester, WELCOME_SUBJECT),
        ]
    )


@pytest.mark.parametrize("policy", ["moderate", "confirm_then_moderate"])
def test_moderated_list_the_bot_accepts_what_it_vetted(
    world: World,
    mailman3: Mailman3,
    bridge: Bridge,
    policy: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a moderated list the requester's confirmation is not the end: Mailman then holds the request for
    a moderator (owner notice to secir-owner@, i.e. the owners and moderators). What must happen next is a
    moderator's "accept" over REST:

        POST /3.1/lists/secir.lists.example.org/requests/<token>  action=accept

    The Secretariat can do that by hand; with `mailman.rest_url` set the bot does it itself, for addresses
    it approved, at its next pending-subscription check (rules: mailman.check_pending_every)."""
    requester = f"jan.{policy.replace('_', '-')}@registry.example"
    mailman3.create_list(LIST, policy, owners=[SECRETARIAT], moderators=[BOT])  # type: ignore[arg-type]
    use_rest(world, mailman3)  # dialect stays mailman3 (e-mail): REST only for the moderation
    approve(world, requester)
    bridge.relay()
    bridge.mailman_sent(BOT, "The results of your email commands")
    bridge.confirm_as(requester)
    held = mailman3.wait_until(lambda: mailman3.pending(LIST_ID, "moderator"), what="held for the moderator")
    assert [h["email"] for h in held] == [requester]
    notices = bridge.mailman_sent(BOT, f"New subscription request to Secir from {requester}")
    assert notices[0].routed == (BOT,)
    bridge.mailman_sent(SECRETARIAT, f"New subscription request to Secir from {requester}")
    assert mailman3.roster(LIST_ID) == []

    # The next scheduled check (after check_pending_every) accepts it; the Mailman mails are linked.
    world.clock.advance(hours=1, minutes=1)
    world.run_once()
    mailman3.wait_until(lambda: mailman3.roster(LIST_ID) == [requester], what="requester in the roster")
    assert mailman3.pending(LIST_ID) == []
    bridge.mailman_sent(requester, WELCOME_SUBJECT)
    assert sorted(mailman_rows(world)) == sorted(
        [
            ("mailman", "command-results", 1, "The results of your email commands"),
            ("mailman", "owner-notice", 1, f"New subscription request to Secir from {requester}"),
        ]
    )
    data = request(world)
    assert data["mailman_status"] == "member"
    actions = audit_actions(world)
    assert actions.count("mailman-acknowledged") == 2 and actions.count("mailman-moderation-accepted") == 1
    accepted = next(t for t in data["timeline"] if t["action"] == "mailman-moderation-accepted")["details"]
    assert accepted["http"] == 204 and held[0]["token"] not in json.dumps(accepted)  # only a hash is kept
    assert_no_answer(world.sent(), mailman3.sink.messages)
    assert "(Mailman acknowledged)" in run_show(world, capsys, monkeypatch)


def test_moderated_list_the_secretariat_accepts_over_rest(world: World, mailman3: Mailman3, bridge: Bridge) -> None:
    """Without REST for the bot, the held request waits for a person: the Secretariat accepts it."""
    requester = "jan.by-hand@registry.example"
    mailman3.create_list(LIST, "moderate", owners=[SECRETARIAT])
    approve(world, requester)
    bridge.relay()
    bridge.confirm_as(requester)
    held = mailman3.wait_until(lambda: mailman3.pending(LIST_ID, "moderator"), what="held for the moderator")
    world.clock.advance(hours=2)
    world.run_once()  # without mailman.rest_url the bot cannot (and does not try to) moderate
    assert mailman3.roster(LIST_ID) == []
    assert mailman3.moderate(LIST_ID, held[0]["token"], "accept") == 204
    assert mailman3.roster(LIST_ID) == [requester]


def already_member_by_mail(world: World, mailman3: Mailman3, bridge: Bridge, requester: str) -> str:
    """The e-mail dialect for somebody who is a member already: Mailman's results mail, in the bot's mailbox."""
    mailman3.create_list(LIST, "confirm", owners=[SECRETARIAT])
    mailman3.subscribe(LIST_ID, requester)
    approve(world, requester)
    bridge.relay()
    results = bridge.mailman_sent(BOT, "The results of your email commands")[0]
    world.run_once()
    return str(results.message.get_content())


def test_email_dialect_already_a_member_mailman_says_so(world: World, mailman3: Mailman3, bridge: Bridge) -> None:
    requester = "jan.member-mail@registry.example"
    text = already_member_by_mail(world, mailman3, bridge, requester)
    assert mailman.read_results(text) == CommandOutcome(
        "member", f"{requester} is already a member of mailing list {LIST}"
    )
    assert [subject(m) for m in bridge.mailman.sink.to(requester)] == [WELCOME_SUBJECT]  # from the REST add
    assert mailman_rows(world) == [("mailman", "command-results", 1, "The results of your email commands")]
    assert "mailman-acknowledged" in audit_actions(world)


def test_email_dialect_already_a_member_is_reported_like_a_rest_conflict(
    world: World, mailman3: Mailman3, bridge: Bridge
) -> None:
    requester = "jan.member-mail2@registry.example"
    already_member_by_mail(world, mailman3, bridge, requester)
    assert request(world)["mailman_status"] == "conflict"
    told = [c for c in world.sent() if c.rcpt_tos == [SECRETARIAT] and subject(c).startswith("Mailman says")]
    assert [subject(c) for c in told] == [f"Mailman says {requester} is already a member or pending [#1]"]


# --- REST dialect ---------------------------------------------------------------------------------------


class FlakyRest:
    """The network between the bot and Mailman's REST API: forwards every call to Mailman, but can answer
    the next subscriptions (POST /3.1/members) with 5xx instead (`fail_next`; other calls, such as the
    pending-request check, pass) or refuse connections (`stop`, then `start` again on the same port)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.failures: list[int] = []
        self.calls: list[tuple[str, str, int]] = []  # (method, path, status answered)
        self.authorizations: set[str] = set()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def fail_next(self, n: int, status: int = 500) -> None:
        self.failures.extend([status] * n)

    def posts(self, path: str) -> int:
        return sum(1 for method, p, _ in self.calls if method == "POST" and p == path)

    def start(self) -> None:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.authorizations.add(self.headers.get("Authorization", ""))
                if proxy.failures and self.command == "POST" and self.path == "/3.1/members":
                    status = proxy.failures.pop(0)
                    payload, kind = b'{"title": "500 Internal Server Error"}', "application/json"
                else:
                    headers = {
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() in ("authorization", "content-type", "accept")
                    }
                    answer = requests.request(
                        self.command, proxy.upstream + self.path, data=body, headers=headers, timeout=30
                    )
                    status, payload = answer.status_code, answer.content
                    kind = answer.headers.get("Content-Type", "application/json")
                proxy.calls.append((self.command, self.path, status))
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_DELETE = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((LOOPBACK, self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def flaky(mailman3: Mailman3) -> Iterator[FlakyRest]:
    proxy = FlakyRest(mailman3.rest_url)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def outbox_rest(world: World) -> sqlite3.Row:
    rows = world.bot().store.all("SELECT * FROM outbox WHERE kind = 'mailman-rest'")
    assert len(rows) == 1
    return rows[0]


def assert_secret_nowhere(world: World, secret: str, caplog: pytest.LogCaptureFixture) -> None:
    """The password in no log record, no text or blob of any table, no byte of the store's files."""
    assert caplog.records, "nothing was logged: the check would prove nothing"
    for record in caplog.records:
        assert secret not in record.getMessage() and secret not in str(record.args), record.name
    assert secret not in caplog.text
    store = world.bot().store
    tables = [r["name"] for r in store.all("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        for row in store.all(f'SELECT * FROM "{table}"'):
            for value in tuple(row):
                if isinstance(value, bytes):
                    assert secret.encode() not in value, table
                elif isinstance(value, str):
                    assert secret not in value, table
    path = world.bot().config.store.path
    for file in path.parent.glob(path.name + "*"):
        assert secret.encode() not in file.read_bytes(), file.name
    assert secret not in world.config_file.read_text()  # it came from the environment


def test_rest_dialect_member_at_once(
    world: World,
    mailman3: Mailman3,
    bridge: Bridge,
    flaky: FlakyRest,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """201: pre_verified + pre_confirmed + pre_approved make a member at once, even on a moderated list;
    Mailman's owner notice about it reaches the bot, is linked and gets no answer."""
    caplog.set_level(logging.DEBUG)
    requester = "jan.rest@registry.example"
    mailman3.create_list(LIST, "moderate", owners=[SECRETARIAT], moderators=[BOT], admin_notify_mchanges=True)
    use_rest(world, mailman3, url=flaky.url, dialect="mailman3-rest")
    approve(world, requester)
    sent = bridge.relay()
    assert bridge.relayed == []  # no command mail: REST only
    assert mailman3.roster(LIST_ID) == [requester]  # at once, no confirmation, no moderator
    assert flaky.calls.count(("POST", "/3.1/members", 201)) == 1
    assert flaky.authorizations == {requests.auth._basic_auth_str(mailman3.admin_user, mailman3.admin_pass)}
    data = request(world)
    assert data["mailman_status"] == "member" and "mailman-member" in audit_actions(world)
    assert outbox_rest(world)["state"] == "sent"
    assert not [c for c in sent if c.rcpt_tos == [SECRETARIAT] and "Mailman" in subject(c)]

    welcome = bridge.mailman_sent(requester, WELCOME_SUBJECT)
    assert not bridge.mailman.sink.to(requester)[:-1]  # the welcome is all the requester got: no confirmation
    notice = bridge.mailman_sent(BOT, "Secir subscription notification")[0]
    assert notice.routed == (BOT,)
    world.run_once()
    assert mailman_rows(world) == [("mailman", "owner-notice", 1, "Secir subscription notification")]
    assert audit_actions(world).count("mailman-acknowledged") == 1
    assert request(world)["mailman_status"] == "member"
    assert_no_answer(world.sent(), [*welcome, notice])
    assert world.bot().store.one("SELECT COUNT(*) AS n FROM requests")["n"] == 1
    assert "(Mailman acknowledged)" in run_show(world, capsys, monkeypatch)
    assert_secret_nowhere(world, mailman3.admin_pass, caplog)


@pytest.mark.parametrize("before", ["member", "pending"])
def test_rest_dialect_conflict_is_reported_not_retried(
    world: World, mailman3: Mailman3, bridge: Bridge, flaky: FlakyRest, before: str
) -> None:
    """409: the address is already a member, or has a subscription pending (here: it wrote to -join
    itself and has not confirmed). The request says "conflict", the Secretariat is told what Mailman said,
    and the call is never made again."""
    requester = f"jan.conflict-{before}@registry.example"
    mailman3.create_list(LIST, "confirm", owners=[SECRETARIAT])
    if before == "member":
        mailman3.subscribe(LIST_ID, requester)
        said = "Member already subscribed"
    else:
        bridge.walk_in(requester, "Jan Jansen")
        mailman3.wait_until(lambda: mailman3.pending(LIST_ID), what="a pending subscription")
        said = "Subscription request already pending"
    use_rest(world, mailman3, url=flaky.url, dialect="mailman3-rest")
    approve(world, requester)
    sent = bridge.relay()
    assert flaky.calls.count(("POST", "/3.1/members", 409)) == 1
    data = request(world)
    assert data["state"] == "approved" and data["mailman_status"] == "conflict"
    assert "mailman-conflict" in audit_actions(world)
    told = [c for c in sent if c.rcpt_tos == [SECRETARIAT] and subject(c).startswith("Mailman says")]
    assert [subject(c) for c in told] == [f"Mailman says {requester} is already a member or pending [#1]"]
    assert said in flat(told[0])
    row = outbox_rest(world)
    assert (row["state"], row["attempts"]) == ("sent", 1)

    world.clock.advance(hours=3)
    world.run_once()
    assert flaky.posts("/3.1/members") == 1
    assert outbox_rest(world)["attempts"] == 1
    assert mailman3.roster(LIST_ID) == ([requester] if before == "member" else [])


def test_rest_dialect_retries_5xx_and_refused_connections(
    world: World, mailman3: Mailman3, bridge: Bridge, flaky: FlakyRest, caplog: pytest.LogCaptureFixture
) -> None:
    """500, then connection refused, then a restart of the bot: the decision and the queued call survive,
    and the third attempt makes the member. The password is in no log and nowhere in the store."""
    caplog.set_level(logging.DEBUG)
    requester = "jan.retry@registry.example"
    mailman3.create_list(LIST, "confirm", owners=[SECRETARIAT])
    use_rest(world, mailman3, url=flaky.url, dialect="mailman3-rest")
    flaky.fail_next(1, 500)
    approve(world, requester)
    row = outbox_rest(world)
    assert (row["state"], row["attempts"]) == ("queued", 1) and "HTTP 500" in row["last_error"]
    data = request(world)
    assert (data["state"], data["decided_by"], data["mailman_status"]) == ("approved", NL_ADMIN, "queued")
    assert mailman3.roster(LIST_ID) == []

    flaky.stop()  # Mailman's REST is unreachable
    world.clock.advance(minutes=1)
    world.run_once()
    row = outbox_rest(world)
    assert (row["state"], row["attempts"]) == ("queued", 2) and "ConnectionError" in row["last_error"]

    world.restart()  # a new process: only the store remembers
    flaky.start()
    world.clock.advance(minutes=2)
    world.run_once()
    row = outbox_rest(world)
    assert (row["state"], row["attempts"]) == ("sent", 3)
    assert [status for method, path, status in flaky.calls if path == "/3.1/members"] == [500, 201]
    assert mailman3.roster(LIST_ID) == [requester]
    data = request(world)
    assert (data["state"], data["mailman_status"]) == ("approved", "member")
    assert [t["action"] for t in data["timeline"]].count("delivery-deferred") == 2
    assert_secret_nowhere(world, mailman3.admin_pass, caplog)


@pytest.mark.parametrize("trouble", ["5xx for days", "no such list"])
def test_rest_dialect_failure_for_good_is_recorded_and_reported(
    world: World, mailman3: Mailman3, bridge: Bridge, flaky: FlakyRest, trouble: str
) -> None:
    """Mailman answers 5xx for longer than outbox.give_up_after (3 days), or 400 at once (here: the list
    does not exist): the call is failed, the request says "failed", the Secretariat is told."""
    requester = f"jan.{trouble.replace(' ', '-')}@registry.example"
    mailman3.create_list(LIST, "confirm", owners=[SECRETARIAT])
    if trouble == "no such list":
        mailman3.rest.delete(f"lists/{LIST_ID}")
    else:
        flaky.fail_next(100, 503)
    use_rest(world, mailman3, url=flaky.url, dialect="mailman3-rest")
    approve(world, requester)
    if trouble == "5xx for days":
        assert (outbox_rest(world)["state"], request(world)["mailman_status"]) == ("queued", "queued")
        world.clock.advance(days=3, minutes=1)
        world.run_once()
    row = outbox_rest(world)
    assert (row["state"], row["attempts"]) == ("failed", 2 if trouble == "5xx for days" else 1)
    assert ("HTTP 503" if trouble == "5xx for days" else "No such list") in row["last_error"]
    data = request(world)
    assert (data["state"], data["mailman_status"]) == ("approved", "failed")
    assert "mailman-failed" in audit_actions(world)
    calls = flaky.posts("/3.1/members")
    world.clock.advance(hours=6)
    world.run_once()
    assert flaky.posts("/3.1/members") == calls  # never again
    told = world.bot().store.all("SELECT to_key, state FROM outbox WHERE purpose = 'delivery-failed'")
    assert [(r["to_key"], r["state"]) for r in told] == [(SECRETARIAT, "sent")]


# --- no back door ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("reject", [False, True])
def test_walk_in_is_reported_and_vetted_request_accepted(
    world: World, mailman3: Mailman3, bridge: Bridge, reject: bool
) -> None:
    """Someone subscribes through secir-join@ directly on a moderated list. Until they confirm, the request
    is theirs, not a moderator's: the bot neither reports nor touches it (nor the vetted requester's, who
    has not confirmed either). Once both confirmed, Mailman holds both for the moderator: the bot reports
    the walk-in to the Secretariat once (and rejects it when rules.mailman.reject_unvetted says so), and
    accepts the request it vetted."""
    requester = f"jan.vetted-{reject}@registry.example".lower()
    walk_in = f"mallory-{reject}@elsewhere.example".lower()
    mailman3.create_list(LIST, "moderate", owners=[SECRETARIAT], moderators=[BOT])
    world.rules["mailman"] = {"reject_unvetted": reject, "check_pending_every": "1h"}
    use_rest(world, mailman3)
    bridge.walk_in(walk_in, "Mallory")
    approve(world, requester)
    bridge.relay()
    waiting = mailman3.wait_until(
        lambda: len(mailman3.pending(LIST_ID)) == 2 and mailman3.pending(LIST_ID),
        what="both waiting for their own confirmation",
    )
    assert {(w["email"], w["token_owner"]) for w in waiting} == {(walk_in, "subscriber"), (requester, "subscriber")}

    world.clock.advance(hours=1, minutes=1)
    world.run_once()  # a pending check: nothing for a moderator yet
    assert {w["token"] for w in mailman3.pending(LIST_ID)} == {w["token"] for w in waiting}
    assert audit_count(world, "mailman-unvetted") == audit_count(world, "mailman-moderation-accepted") == 0
    assert not [c for c in world.sent() if subject(c).startswith("Unvetted")]

    bridge.confirm_as(walk_in)
    bridge.confirm_as(requester)
    held = mailman3.wait_until(
        lambda: len(mailman3.pending(LIST_ID, "moderator")) == 2 and mailman3.pending(LIST_ID, "moderator"),
        what="both held for the moderator",
    )
    walk_in_token = next(h["token"] for h in held if h["email"] == walk_in)
    bridge.mailman_sent(BOT, f"New subscription request to Secir from {walk_in}")
    bridge.mailman_sent(BOT, f"New subscription request to Secir from {requester}")

    world.clock.advance(hours=1, minutes=1)
    world.run_once()
    mailman3.wait_until(lambda: mailman3.roster(LIST_ID) == [requester], what="vetted requester accepted")
    assert [p["email"] for p in mailman3.pending(LIST_ID, "moderator")] == ([] if reject else [walk_in])
    sent = world.sent()
    reports = [c for c in sent if c.rcpt_tos == [SECRETARIAT] and subject(c).startswith("Unvetted")]
    assert [subject(c) for c in reports] == [f"Unvetted subscription request on {LIST}: {walk_in}"]
    text = flat(reports[0])
    assert ("the bot has rejected it" in text) is reject and ("It is still pending" in text) is not reject
    assert walk_in_token not in text  # moderation tokens are secrets
    if reject:
        bridge.mailman_sent(walk_in, 'Request to mailing list "Secir" rejected')
    assert request(world)["mailman_status"] == "member"
    # Mailman's notice about the walk-in reached the bot too: recorded, linked to nothing, unanswered.
    rows = mailman_rows(world)
    assert ("mailman", "owner-notice", None, f"New subscription request to Secir from {walk_in}") in rows
    assert ("mailman", "owner-notice", 1, f"New subscription request to Secir from {requester}") in rows
    assert_no_answer([c for c in sent if c not in reports], mailman3.sink.messages)
    assert not [c for c in sent if walk_in in c.rcpt_tos]
    assert world.bot().store.one("SELECT COUNT(*) AS n FROM requests")["n"] == 1
    path = world.bot().config.store.path
    raw = b"".join(f.read_bytes() for f in path.parent.glob(path.name + "*"))
    assert walk_in_token.encode() not in raw

    # Reported once: the next check says nothing new.
    world.clock.advance(hours=1, minutes=1)
    world.run_once()
    assert not [c for c in world.sent() if subject(c).startswith("Unvetted")]
    assert audit_count(world, "mailman-unvetted") == 1


def audit_count(world: World, action: str) -> int:
    return int(world.bot().store.one("SELECT COUNT(*) AS n FROM audit WHERE action = ?", (action,))["n"])
