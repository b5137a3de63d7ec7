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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from .compose import LOOP_HEADER, POLICY, new_message_id
from .mailman_rest import list_id as list_id  # the REST dialect's list id, for the callers here

if TYPE_CHECKING:
    from .bot import Bot
    from .config import Config
    from .message import InboundMail

EMAIL_DIALECTS = ("mailman2", "mailman3")


def request_address(list_address: str) -> str:
    """secir@lists.example.org -> secir-request@lists.example.org"""
    local, domain = list_address.rsplit("@", 1)
    return f"{local}-request@{domain}"


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


def queue_subscribe(bot: Bot, request: Mapping[str, Any]) -> int:
    """Queue the subscription of an approved requester (inside the decision's transaction)."""
    config = bot.config
    address = request["requester"]
    if config.mailman.dialect in EMAIL_DIALECTS:
        msg = command_message(config, address, bot.now())
        return bot.outbox.queue_message(
            msg, purpose="mailman-command", recipients=[request_address(config.mailman.list)], request_id=request["id"]
        )
    return bot.outbox.queue_rest(
        purpose="mailman-subscribe",
        call={
            "action": "subscribe",
            "list_id": list_id(config.mailman.list),
            "address": address,
            "display_name": request["requester_name"] or "",
        },
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
        row = bot.store.one(
            "SELECT request_id FROM outbox WHERE message_id = ? AND request_id IS NOT NULL", (message_id,)
        )
        if row is not None:
            return int(row["request_id"])
    for address in _ADDRESS.findall(text):
        request_id = bot.ledger.latest_approved(address.lower())
        if request_id is not None:
            return request_id
    return None


# --- what Mailman answered to our command ---------------------------------------------------------------


@dataclass(frozen=True)
class CommandOutcome:
    """One line of a results mail about a subscribe command, and what it means for the request:
    "confirmation-sent" (the person must now confirm), "subscribed", "held" (for a moderator), "member" or
    "pending" (already: nothing was done), "refused" (the command or address was not accepted)."""

    state: str
    line: str


# (pattern on one results line, state); the source of each wording is named.
_RESULT_LINES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), state)
    for p, state in (
        # Mailman 3.3 commands/eml_membership.py Join.process and the errors it prints.
        (r"^Confirmation email sent to \S", "confirmation-sent"),
        (r" is already a member of mailing list \S+$", "member"),  # interfaces/member.py AlreadySubscribedError
        (r" has a pending subscription for \S+$", "pending"),  # SubscriptionPendingError
        (r" is not allowed to subscribe to \S+$", "refused"),  # MembershipIsBannedError
        (r"^Invalid email address: ", "refused"),
        (r"^(?:join|subscribe) bad argument: ", "refused"),
        (r"^(?:join|subscribe): No valid address found to subscribe", "refused"),
        (r"^No such command: ", "refused"),  # runners/command.py
        # Mailman 2.1 Mailman/Commands/cmd_subscribe.py (results indented by four spaces).
        (r"^Subscription request succeeded\.$", "subscribed"),
        (r"^Your subscription request has been forwarded to the list administrator", "held"),
        (r"^You are already subscribed!$", "member"),
        (r"^The email address you supplied is banned from this mailing list\.", "refused"),
        (r"^Mailman won't accept the given email address as a valid address\.", "refused"),
        (r"^Your subscription is not allowed because", "refused"),
        (r"^Bad digest specifier: ", "refused"),
        (r"^Usage:$", "refused"),
        (r"^No valid address found to subscribe$", "refused"),
    )
)
_SECTION = re.compile(r"^- (?:Unprocessed|Ignored|Done)[:.]")


def read_results(text: str | None) -> CommandOutcome | None:
    """The outcome of our subscribe command in a Mailman results mail (3.3 or 2.1), from the lines of its
    "- Results:" section; None if it says nothing we know. Pure: deciding what to do is the caller's."""
    lines = (text or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "- Results:") + 1
    except StopIteration:
        return None
    for raw in lines[start : start + 50]:
        line = raw.strip()
        if _SECTION.match(line):
            break
        for pattern, state in _RESULT_LINES:
            if pattern.search(line):
                return CommandOutcome(state, line[:300])
    return None
