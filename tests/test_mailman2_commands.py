"""The `mailman2` dialect's command mail, read by Mailman 2.1's own rules (Mailman 2.1 cannot run here).

`mm21_read` below is a small, faithful transcription of how GNU Mailman 2.1 reads a mail to LIST-request@,
from its source (2.1.x as in the mirrors osstech-jp/mailman-vhost and fumiyas/mailman-ja-utf8-debian,
copyright 1998-2018; /work/shared/notes/mailman.md summarises the same):

- Mailman/Queue/CommandRunner.py, `CommandRunner._dispose`: a mail with `Precedence: bulk|junk|list` and
  without `X-Ack: yes` is discarded before anything else (no results, no log the sender sees).
- `Results.__init__`: the decoded Subject (non-ASCII dropped) is command line 0 -- also when it is empty;
  then the first text/plain part's lines, at most `DEFAULT_MAIL_COMMANDS_MAX_LINES` (25), the rest
  "ignored"; any other MIME structure adds "Ignoring non-text/plain MIME parts".
- `Results.process`: blank lines are skipped; each line's first word, lower-cased, is the command; a STOP
  or a bad command (BADCMD) ends processing; lines after it are "unprocessed", never run.
- `Results.do_command`: an unknown word on line 0 (the Subject) is retried once without a "Re:"-like
  prefix, once with the next word, else BADSUBJ (ignored, processing goes on); anywhere else BADCMD.
- Mailman/Commands/cmd_subscribe.py `process` (cmd_join.py imports it): `address=` (any position, value
  case kept) names the address; the first other argument is the password, the second must be `digest` or
  `nodigest` ("Bad digest specifier" -> STOP); a lone `digest`/`nodigest` in the password slot is taken as
  the digest flag; no address = the From: address. cmd_end.py and cmd_stop.py return STOP.

The bot's mail must come through this as exactly one `subscribe` of the approved address, without digest,
and nothing else run: no bad command, no second subscription through the Subject.
"""

from __future__ import annotations

import email
import email.header
import email.iterators
import email.utils
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message

import pytest

from secirbot import mailman
from secirbot.compose import LOOP_HEADER
from secirbot.config import Config, MailmanConfig

CONTINUE, STOP, BADCMD, BADSUBJ = 0, 1, 2, 3
MAX_LINES = 25  # Mailman/Defaults.py.in DEFAULT_MAIL_COMMANDS_MAX_LINES
# Mailman/Commands/cmd_*.py of 2.1: the words that are commands.
COMMANDS = frozenset(
    {
        "confirm",
        "echo",
        "end",
        "help",
        "info",
        "join",
        "leave",
        "lists",
        "password",
        "remove",
        "set",
        "stop",
        "subscribe",
        "unsubscribe",
        "who",
    }
)
WHEN = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
BOT = "join@lists.example.org"


@dataclass
class Subscribe:
    """What cmd_subscribe.process hands to MailList.AddMember (a password of None = Mailman makes one)."""

    address: str
    password: str | None
    digest: int | None  # 0 nodigest, 1 digest, None = the list's default


@dataclass
class Run:
    dropped: str = ""  # why _dispose discarded the mail, if it did
    commands: list[str] = field(default_factory=list)  # Subject, then body lines (at most MAX_LINES)
    ran: list[tuple[int, str, list[str], int]] = field(default_factory=list)  # (line, command, args, status)
    results: list[str] = field(default_factory=list)
    subscribes: list[Subscribe] = field(default_factory=list)
    unprocessed: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    found: int = BADCMD


def mm21_subscribe(run: Run, msg: Message, args: list[str]) -> int:
    """cmd_subscribe.process, without the list: the parsing and the early STOPs."""
    digest: int | None = None
    password: str | None = None
    address: str | None = None
    argnum = 0
    for arg in args:
        if arg.lower().startswith("address="):
            address = arg[8:]
        elif argnum == 0:
            password = arg
        elif argnum == 1:
            if arg.lower() not in ("digest", "nodigest"):
                run.results.append(f"Bad digest specifier: {arg}")
                return STOP
            digest = 1 if arg.lower() == "digest" else 0
        else:
            run.results.append("Usage:")
            return STOP
        argnum += 1  # noqa: SIM113 - counts address= too, exactly as the original does
    if digest is None and password and password.lower() in ("digest", "nodigest"):
        digest = 1 if password.lower() == "digest" else 0
        password = None
    if address is None:
        address = email.utils.parseaddr(str(msg["from"] or ""))[1]
        if not address:
            run.results.append("No valid address found to subscribe")
            return STOP
    run.subscribes.append(Subscribe(address, password, digest))
    return CONTINUE


def mm21_read(raw: bytes) -> Run:
    """What Mailman 2.1's CommandRunner does with this mail sent to LIST-request@ (see the docstring)."""
    msg = email.message_from_bytes(raw)  # compat32, as Mailman 2.1's email package
    run = Run()
    precedence = str(msg.get("precedence", "")).lower()
    if str(msg.get("x-ack", "")).lower() != "yes" and precedence in ("bulk", "junk", "list"):
        run.dropped = f"Precedence: {precedence}"
        return run
    subject = str(email.header.make_header(email.header.decode_header(str(msg.get("subject", "")))))
    run.commands.append(subject.encode("us-ascii", "ignore").decode())
    part = next(iter(email.iterators.typed_subpart_iterator(msg, "text", "plain")), None)
    if part is None or part is not msg:
        run.results.append("Ignoring non-text/plain MIME parts")
    if part is not None:
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        lines = payload.decode(part.get_content_charset("us-ascii"), "replace").splitlines()
        run.commands.extend(lines[:MAX_LINES])
        run.ignored.extend(lines[MAX_LINES:])

    retried = 0

    def do_command(lineno: int, cmd: str, args: list[str]) -> int:
        nonlocal retried
        if cmd not in COMMANDS:
            if lineno != 0:
                return BADCMD
            if retried < 1:
                retried += 1
                if ":" in cmd[:-1]:
                    return do_command(lineno, cmd.rsplit(":", 1)[1].lower(), args)
            if retried < 2 and args:
                retried += 1
                return do_command(lineno, args.pop(0).lower(), args)
            return BADSUBJ
        if cmd in ("subscribe", "join"):
            status = mm21_subscribe(run, msg, args)
        elif cmd in ("end", "stop"):
            status = STOP
        else:
            status = CONTINUE  # another real command ran (help, who...): not what the bot wants
        run.ran.append((lineno, cmd, list(args), status))
        return status

    ret = CONTINUE
    lineno = 0
    for line in run.commands:
        if line and line.strip():
            args = line.split()
            ret = do_command(lineno, args.pop(0).lower(), args)
            if ret in (STOP, CONTINUE):
                run.found = ret
        lineno += 1
        if ret in (STOP, BADCMD):
            break
    run.unprocessed = [line for line in run.commands[lineno:] if line and line.strip()]
    return run


def command_mail(address: str = "jan@registry.example", dialect: str = "mailman2") -> bytes:
    config = Config(mailman=MailmanConfig(dialect=dialect))  # type: ignore[arg-type]
    return mailman.command_message(config, address, WHEN).as_bytes()


def with_header(raw: bytes, name: str, value: str) -> bytes:
    return f"{name}: {value}\r\n".encode() + raw


# --- the bot's mail -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address", ["jan@registry.example", "Jan.Jansen+secir@Registry.Example", "o'brien@cctld.example"]
)
def test_the_bot_command_is_one_subscribe_of_the_approved_address(address: str) -> None:
    raw = command_mail(address)
    run = mm21_read(raw)
    assert run.dropped == ""
    assert run.subscribes == [Subscribe(address, None, 0)]  # address= taken as written, nodigest understood
    assert [(cmd, status) for _, cmd, _, status in run.ran] == [("subscribe", CONTINUE), ("end", STOP)]
    assert run.found == STOP
    assert run.results == []  # no "Bad digest specifier", no "Usage:", no MIME note
    assert run.unprocessed == [] and run.ignored == []


def test_the_bot_command_mail_has_nothing_mailman_21_would_trip_over() -> None:
    msg = email.message_from_bytes(command_mail())
    assert msg["Subject"] is None  # line 0 is empty: nothing is read from it
    assert msg["Precedence"] is None and msg["X-Ack"] is None
    assert msg.get_content_type() == "text/plain" and not msg.is_multipart()
    assert msg["To"] == "secir-request@lists.example.org" and msg["From"] == BOT
    assert msg[LOOP_HEADER] == BOT
    assert mm21_read(command_mail()).commands[0] == ""
    body = msg.get_payload(decode=True).decode("us-ascii").splitlines()
    assert body == ["subscribe address=jan@registry.example nodigest", "end"]
    assert len(body) <= MAX_LINES


def test_end_keeps_a_footer_from_being_run() -> None:
    """An MTA or a gateway may append a footer; after `end` none of it is run (it is only listed as
    unprocessed), while without `end` its first words would be commands (here `help` and `unsubscribe`)."""
    footer = b"\r\nhelp is at https://scan.example/help\r\nunsubscribe from scans at scan.example\r\n"
    with_end = mm21_read(command_mail() + footer)
    assert with_end.subscribes == [Subscribe("jan@registry.example", None, 0)]
    assert [cmd for _, cmd, _, _ in with_end.ran] == ["subscribe", "end"]
    assert with_end.unprocessed == ["help is at https://scan.example/help", "unsubscribe from scans at scan.example"]
    without_end = mm21_read(command_mail().replace(b"\r\nend\r\n", b"\r\n") + footer)
    assert [cmd for _, cmd, _, _ in without_end.ran] == ["subscribe", "help", "unsubscribe"]


# --- the rules themselves: what goes wrong when a mail breaks them -------------------------------------


def test_precedence_bulk_would_be_dropped_silently() -> None:
    raw = with_header(command_mail(), "Precedence", "bulk")
    run = mm21_read(raw)
    assert run.dropped == "Precedence: bulk" and run.subscribes == [] and run.ran == []
    assert mm21_read(with_header(raw, "X-Ack", "yes")).subscribes  # unless X-Ack: yes


def test_a_subject_with_a_command_word_would_subscribe_the_bot_itself() -> None:
    """Why the command mail has no Subject: "Subscribe jan@..." on line 0 runs before the body, and
    cmd_subscribe takes "jan@..." as a password and subscribes the sender, the bot."""
    raw = with_header(command_mail(), "Subject", "Subscribe jan@registry.example")
    run = mm21_read(raw)
    assert run.subscribes[0] == Subscribe(BOT, "jan@registry.example", None)
    assert len(run.subscribes) == 2
    # A subject without a command word is only ignored (BADSUBJ): processing goes on.
    harmless = mm21_read(with_header(command_mail(), "Subject", "Approved request 42"))
    assert harmless.subscribes == [Subscribe("jan@registry.example", None, 0)]


def test_the_mailman3_line_is_not_mailman_21() -> None:
    """`join address=X digest=no` (the mailman3 dialect) is a bad digest specifier for 2.1: the dialect
    setting matters."""
    run = mm21_read(command_mail(dialect="mailman3"))
    assert run.subscribes == [] and run.results == ["Bad digest specifier: digest=no"]
    assert run.ran[0][1:] == ("join", ["address=jan@registry.example", "digest=no"], STOP)
