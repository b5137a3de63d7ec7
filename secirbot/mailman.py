"""Mailman: the subscribe action for an approved request, in the configured dialect.

`mailman2` and `mailman3` are e-mail commands to the list's `-request` address (see Mailman's own
command parsers: the Subject is read as a command line too, so the command mail has none; the body holds
the command and `end`, so that a footer an MTA might append is never read as a bad command; no
`Precedence` header, or Mailman drops the mail silently). `mailman3-rest` is a REST call, queued in the
outbox like a mail and made by `rest.py`.
"""

from __future__ import annotations

import email.utils
import re
from datetime import datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING

from .compose import LOOP_HEADER, POLICY, new_message_id

if TYPE_CHECKING:
    import sqlite3

    from .bot import Bot
    from .config import Config
    from .message import InboundMail

EMAIL_DIALECTS = ("mailman2", "mailman3")


def request_address(list_address: str) -> str:
    """secir@lists.example.org -> secir-request@lists.example.org"""
    local, domain = list_address.rsplit("@", 1)
    return f"{local}-request@{domain}"


def list_id(list_address: str) -> str:
    """Mailman 3's list id: secir@lists.example.org -> secir.lists.example.org"""
    return list_address.replace("@", ".", 1)


def command_line(dialect: str, address: str) -> str:
    """The one subscribe command line for a dialect."""
    if any(ch.isspace() for ch in address) or "@" not in address:
        raise ValueError(f"not a subscribable address: {address!r}")
    if dialect == "mailman2":
        return f"subscribe address={address} nodigest"
    if dialect == "mailman3":
        return f"join address={address} digest=no"
    raise ValueError(f"no e-mail command for dialect {dialect!r}")


def command_message(config: Config, address: str, when: datetime) -> EmailMessage:
    """The command mail: From the bot, to LIST-request, no Subject, the command and `end`."""
    sender = config.addresses.bot
    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender
    msg["To"] = request_address(config.mailman.list)
    msg["Date"] = email.utils.format_datetime(when)
    msg["Message-ID"] = new_message_id(sender.rsplit("@", 1)[1])
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    msg[LOOP_HEADER] = sender
    msg.set_content(f"{command_line(config.mailman.dialect, address)}\nend\n", charset="us-ascii")
    return msg


def queue_subscribe(bot: Bot, request: sqlite3.Row) -> int:
    """Queue the subscription of an approved requester (inside the decision's transaction)."""
    config = bot.config
    address = request["requester"]
    if config.mailman.dialect in EMAIL_DIALECTS:
        msg = command_message(config, address, bot.now())
        return bot.outbox.queue_message(msg, purpose="mailman-command",
                                        recipients=[request_address(config.mailman.list)],
                                        request_id=request["id"])
    return bot.outbox.queue_rest(
        purpose="mailman-subscribe",
        call={"action": "subscribe", "list_id": list_id(config.mailman.list), "address": address,
              "display_name": request["requester_name"] or ""},
        request_id=request["id"],
    )


_MESSAGE_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")


def link_request(bot: Bot, mail: InboundMail) -> int | None:
    """The request a Mailman notice is about: by the Message-ID of our command that Mailman 3 quotes in
    its results (or threads to), else by the approved requester's address named in it. Linking only
    records an acknowledgement; it never decides anything."""
    text = "\n".join([mail.subject, mail.text or "", mail.header("In-Reply-To"), mail.header("References")])
    for message_id in _MESSAGE_ID.findall(text):
        row = bot.store.one("SELECT request_id FROM outbox WHERE message_id = ? AND request_id IS NOT NULL",
                            (message_id,))
        if row is not None:
            return int(row["request_id"])
    for address in _ADDRESS.findall(text):
        row = bot.store.one("SELECT id FROM requests WHERE requester_key = ? AND state = 'approved'"
                            " ORDER BY id DESC LIMIT 1", (address.lower(),))
        if row is not None:
            return int(row["id"])
    return None
