"""`secirbot demo`: the whole admission procedure on a fresh machine with nothing configured.

It starts a private Dovecot (the bot's mailbox), an SMTP sink (where the bot's mail lands), and a local
stand-in for IANA's whois serving real records (.dk, .se); then runs the real daemon (IDLE and all) in a
thread, plays a requester and an IANA contact, and prints every mail that passes, in order.

The transcript owns stdout. The bot's own log lines go to a log file named in the transcript's first
paragraph (and kept afterwards), never to the terminal: on a terminal stderr and stdout interleave, and a
log line in the middle of a mail reads as part of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.policy
import email.utils
import logging
import os
import shutil
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from importlib import resources
from pathlib import Path
from typing import TextIO

import yaml

from .config import AddressesConfig, Config, DnsConfig, IanaConfig, ImapConfig, SmtpConfig, StoreConfig
from .daemon import Daemon
from .reports import render_timeline, show_request
from .rules import load_rules
from .sandbox.dovecot import Dovecot, DovecotError, MailUser
from .sandbox.iana_servers import RdapServer, WhoisServer
from .sandbox.smtp_sink import Captured, SmtpSink
from .wiring import build

REQUESTER = "Mette Hansen <mette.hansen@security.punktum.example>"
RECORDS = ("dk", "se")


def find_folder(name: str) -> Path | None:
    """templates/ or rules.yaml: in the current folder, else beside the package (a source checkout)."""
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent, Path(__file__).resolve().parent / "defaults"):
        if (base / name).exists():
            return base / name
    return None


def _records() -> dict[str, bytes]:
    folder = resources.files("secirbot.sandbox").joinpath("records")
    return {tld: folder.joinpath(f"whois-{tld}.txt").read_bytes() for tld in RECORDS}


class Transcript:
    def __init__(self, out: TextIO):
        self.out = out
        self.count = 0

    def say(self, text: str) -> None:
        # Never split a path or an address at a hyphen: the operator copies them from here.
        print("\n" + textwrap.fill(text, 100, break_on_hyphens=False, break_long_words=False), file=self.out)

    def mail(self, direction: str, msg: EmailMessage | Captured) -> None:
        self.count += 1
        message = msg.message if isinstance(msg, Captured) else msg
        print(f"\n---- mail {self.count}: {direction} " + "-" * max(4, 70 - len(direction)), file=self.out)
        for header in ("From", "To", "Cc", "Reply-To", "Subject"):
            if message[header] is not None:
                print(f"{header}: {message[header]}", file=self.out)
        if isinstance(msg, Captured):
            print(f"(envelope to: {', '.join(msg.rcpt_tos)})", file=self.out)
        print("", file=self.out)
        body = message.get_body(("plain",))
        print((body.get_content() if body is not None else "").rstrip(), file=self.out)


@contextlib.contextmanager
def logs_to(path: Path) -> Iterator[None]:
    """Send every log record to `path` instead of the handlers `secirbot --log-format` set up (keeping
    their format), and give those back afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = logging.FileHandler(path, encoding="utf-8")
    formatter = next((h.formatter for h in saved if h.formatter is not None), None)
    handler.setFormatter(formatter or logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers = [handler]
    try:
        yield
    finally:
        root.handlers = saved
        handler.close()


def run_demo(keep: bool = False, out: TextIO = sys.stdout) -> int:
    templates, rules_file = find_folder("templates"), find_folder("rules.yaml")
    if templates is None or rules_file is None:
        print("error: run the demo from the secirbot folder (it needs templates/ and rules.yaml)", file=sys.stderr)
        return 1
    # Outside the demo's folder, so that it outlives the clean-up: the log is what one reads after a surprise.
    handle, name = tempfile.mkstemp(prefix="secirbot-demo-", suffix=".log")
    os.close(handle)
    log_file = Path(name)
    with logs_to(log_file):
        return _run(keep, out, templates, rules_file, log_file)


def _run(keep: bool, out: TextIO, templates: Path, rules_file: Path, log_file: Path) -> int:
    root = Path(tempfile.mkdtemp(prefix="secirbot-demo-"))
    dovecot = Dovecot(pool_size=2, user_prefix="demo")
    try:
        dovecot.start()
    except DovecotError as exc:
        print(f"error: the demo needs Dovecot: {exc} (log: {log_file})", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)
        return 1
    sink, whois, rdap = SmtpSink(), WhoisServer(_records()), RdapServer({})
    sink.start()
    whois.__enter__()
    rdap.__enter__()
    try:
        return _play(root, templates, rules_file, dovecot, dovecot.new_user(), sink, whois, rdap, out, log_file)
    finally:
        rdap.__exit__(None, None, None)
        whois.__exit__(None, None, None)
        sink.stop()
        dovecot.close()
        if keep:
            print(f"\nthe demo's store and configuration are kept in {root}", file=out)
        else:
            shutil.rmtree(root, ignore_errors=True)


def _play(
    root: Path,
    templates: Path,
    rules_file: Path,
    dovecot: Dovecot,
    user: MailUser,
    sink: SmtpSink,
    whois: WhoisServer,
    rdap: RdapServer,
    out: TextIO,
    log_file: Path,
) -> int:
    rules = yaml.safe_load(rules_file.read_text(encoding="utf-8")) or {}
    rules["pilot"] = {"enabled": True, "cctlds": list(RECORDS)}
    (root / "rules.yaml").write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    config = Config(
        imap=dataclasses.replace(
            ImapConfig(),
            host=dovecot.host,
            port=dovecot.imap_port,
            security="none",
            username=user.name,
            password=user.password,
        ),
        smtp=dataclasses.replace(SmtpConfig(), host=sink.host, port=sink.port, security="none"),
        addresses=AddressesConfig(),
        iana=dataclasses.replace(IanaConfig(), whois=whois.endpoint, rdap=rdap.base_url, timeout_seconds=3),
        dns=DnsConfig(enabled=False),
        store=StoreConfig(path=root / "secirbot.sqlite3"),
        rules=root / "rules.yaml",
        templates=templates,
    )
    bot = build(config, load_rules(config.rules))
    daemon = Daemon(bot)
    thread = threading.Thread(target=daemon.run, name="secirbot", daemon=True)
    show = Transcript(out)
    show.say(
        f"secirbot demo. The bot ({config.addresses.bot}) watches a private Dovecot mailbox; its mail "
        f"goes to a local SMTP sink; a local stand-in answers like whois.iana.org with the real records "
        f"of {', '.join('.' + t for t in RECORDS)}. Nothing leaves this machine. The bot's own log lines "
        f"go to {log_file}, not here."
    )
    thread.start()
    try:
        show.say("1. A requester who works for the .dk registry asks to join.")
        request = _message(
            REQUESTER,
            config.addresses.bot,
            "subscribe .dk",
            "Name: Mette Hansen\nRole: incident handler, CSIRT\n\n"
            "I handle security incidents for the .dk registry and would like to join the list.\n",
        )
        show.mail("requester -> bot", request)
        started = time.monotonic()
        user.append(request.as_bytes(policy=email.policy.SMTP))
        first = sink.wait_for(4, timeout=30)
        show.say(
            f"2. The bot looked .dk up in IANA's Root Zone Database and, {time.monotonic() - started:.1f} s "
            "after the request arrived, mailed each IANA-listed contact its own approval request (each with "
            "a reply address of its own), a copy to the Secretariat without any reply token, and an "
            "acknowledgement to the requester:"
        )
        for captured in first:
            show.mail(f"bot -> {', '.join(captured.rcpt_tos)}", captured)
        approval = next(c for c in first if c.message["Reply-To"] and "admin" in c.rcpt_tos[0])
        show.say(
            "3. The administrative contact answers from the address IANA lists, with APPROVE on the first "
            "line (their mail client quotes the request below)."
        )
        plain = approval.message.get_body(("plain",))
        assert plain is not None  # the bot's approval request is text/plain
        quoted = "\n".join("> " + ln for ln in plain.get_content().splitlines())
        reply = _message(
            f"Punktum dk Administrative Contact <{approval.rcpt_tos[0]}>",
            approval.message["Reply-To"],
            "Re: " + approval.message["Subject"],
            f"APPROVE\n\nOn {email.utils.format_datetime(bot.now())}, {config.addresses.bot} wrote:\n{quoted}\n",
            in_reply_to=approval.message["Message-ID"],
        )
        show.mail("approver -> bot", reply)
        user.append(reply.as_bytes(policy=email.policy.SMTP))
        second = sink.wait_for(len(first) + 4, timeout=30)[len(first) :]
        show.say(
            "4. The bot checked the token, the sender and the word, and acted: the Mailman subscribe command "
            "to the list's -request address, and notices to the requester, the Secretariat and the other "
            "contact:"
        )
        for captured in second:
            show.mail(f"bot -> {', '.join(captured.rcpt_tos)}", captured)
    finally:
        daemon.stop()
        thread.join(timeout=15)
    data = show_request(bot.store, 1)
    if data is not None:
        show.say("5. Everything is on record. `secirbot show 1` prints:")
        print("\n" + render_timeline(data), file=out)
    show.say(
        f"Done: {show.count} mails. With a real mailbox, SMTP server and Mailman configured in secirbot.yaml, "
        f"`secirbot run` does the same for real. What the bot logged meanwhile is in {log_file}."
    )
    bot.store.close()
    return 0


def _message(sender: str, to: str, subject: str, body: str, in_reply_to: str | None = None) -> EmailMessage:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(email.utils.localtime())
    msg["Message-ID"] = email.utils.make_msgid(domain="client.example")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(body)
    return msg
