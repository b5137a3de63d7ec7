"""Taking people off the list: a member's own `leave`, and `secirbot remove` by the Secretariat.

What Mailman lets the bot do decides how (read from Mailman 3.3's own code):
- Mailman 3's e-mail `leave` command acts on the sender's own address only (commands/eml_membership.py
  `Leave.process` uses `msg.sender`), and Mailman 2.1's `unsubscribe address=` needs the member's password.
  So without REST the bot cannot remove anyone by mail: it mails the Secretariat the exact removal to make,
  keeps the member `leaving`, and Mailman's own unsubscription notice to the list owner (which classify
  recognises) or the Secretariat's `secirbot remove --done` confirms it.
- With `mailman.rest_url` the bot deletes the member over REST (rest/members.py `on_delete`: 204 removed,
  202 still waiting for a confirmation or a moderator, 404 not a member); the call goes through the outbox
  like a subscription, so a crash between deciding and calling loses nothing.

Every step writes the roster (roster.py), the audit and the notices in one transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import mailman, roster
from .roster import Member, MemberState

if TYPE_CHECKING:
    from .bot import Bot
    from .outbox import DeliveryEvent


@dataclass(frozen=True)
class Removal:
    member: Member
    how: str  # "rest" (queued REST call) | "secretariat" (a person must do it) | "already-leaving"


def notice_context(
    bot: Bot,
    member: Member,
    *,
    done: bool = False,
    unasked: bool = False,
    asked_by: str = "",
    reason: str = "",
    actor: str = "",
    said: str = "",
) -> dict[str, Any]:
    """The context of removal_secretariat.txt and member_removed.txt."""
    return {
        "address": member.address,
        "name": member.name,
        "cctld": member.as_json()["cctld_unicode"],
        "list_address": bot.config.mailman.list,
        "bot": bot.bot_address,
        "secretariat": bot.secretariat,
        "dialect": bot.config.mailman.dialect,
        "done": done,
        "unasked": unasked,
        "asked_by": asked_by,
        "reason": reason,
        "actor": actor,
        "said": said,
    }


def remove(bot: Bot, member: Member, *, actor: str, reason: str, asked_by: str, cause_message: int | None) -> Removal:
    """Start taking `member` off the list (inside the caller's transaction). `asked_by` says who wanted it,
    for the notices, at the start of a sentence: "The member", "The Secretariat"."""
    now = bot.now()
    if member.state is MemberState.LEAVING:
        return Removal(member, "already-leaving")
    roster.mark_leaving(bot.store, member, now=now, actor=actor, reason=reason)
    if bot.config.mailman.rest_url:
        bot.outbox.queue_rest(
            purpose="mailman-remove",
            call={
                "action": "remove",
                "list_id": mailman.list_id(bot.config.mailman.list),
                "address": member.address,
                "asked_by": asked_by,
                "reason": reason,
                "actor": actor,
            },
            request_id=member.request_id,
            cause_message=cause_message,
        )
        return Removal(member, "rest")
    bot.outbox.queue_mail(
        purpose="removal-secretariat",
        template="removal_secretariat.txt",
        context=notice_context(bot, member, asked_by=asked_by, reason=reason, actor=actor),
        to=[bot.secretariat],
        request_id=member.request_id,
        cause_message=cause_message,
    )
    bot.outbox.queue_mail(
        purpose="removal-member",
        template="member_removed.txt",
        context=notice_context(bot, member, asked_by=asked_by, reason=reason),
        to=[member.address],
        request_id=member.request_id,
        cause_message=cause_message,
    )
    return Removal(member, "secretariat")


def confirmed(
    bot: Bot, member: Member, *, how: str, actor: str = "bot", said: str = "", reason: str | None = None
) -> None:
    """Mailman (its REST answer or its unsubscription notice) or the Secretariat says the member is off the
    list: record it and tell the member and the Secretariat (inside the caller's transaction)."""
    reason = (reason or member.reason or "").strip()
    roster.mark_removed(bot.store, member, now=bot.now(), actor=actor, reason=reason, how=how)
    bot.outbox.queue_mail(
        purpose="removal-secretariat",
        template="removal_secretariat.txt",
        context=notice_context(bot, member, done=True, reason=reason, actor=actor, said=said or how),
        to=[bot.secretariat],
        request_id=member.request_id,
    )
    bot.outbox.queue_mail(
        purpose="removal-member",
        template="member_removed.txt",
        context=notice_context(bot, member, done=True, reason=reason),
        to=[member.address],
        request_id=member.request_id,
    )


def removal_answered(bot: Bot, event: DeliveryEvent) -> None:
    """Mailman answered a queued REST removal (inside the caller's transaction): 204 and 404 confirm it; any
    other answer (202: held for a confirmation or a moderator) leaves the member `leaving` and tells the
    Secretariat, who looks. A removal Mailman was never reached for changes nothing here."""
    assert event.call is not None
    call, http = event.call, event.details.get("http")
    if http is None:
        return
    current = roster.on_list(bot.store, call["address"])
    if http in (204, 404):
        if current is not None:
            how = "member deleted" if http == 204 else "not a member of the list"
            confirmed(bot, current, how=f"Mailman REST: {how} (HTTP {http})", actor=call.get("actor", "bot"))
        return
    bot.store.audit("mailman-remove-held", at=bot.now(), outbox_id=event.outbox_id, address=call["address"], http=http)
    if current is not None:
        bot.outbox.queue_mail(
            purpose="removal-secretariat",
            template="removal_secretariat.txt",
            context=notice_context(
                bot, current, asked_by=call.get("asked_by", "someone"), reason=call.get("reason", "")
            ),
            to=[bot.secretariat],
            request_id=current.request_id,
        )


_UNSUBSCRIBED = re.compile(
    r"<?([\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+)>?\s+has been (?:removed|unsubscribed) from", re.IGNORECASE
)


def confirmed_by_notice(bot: Bot, subject: str, text: str, *, message_row: int | None) -> Member | None:
    """Mailman's owner notice "LIST unsubscription notification" (MM3 app/membership.py delete_member,
    template list:admin:notice:unsubscribe: "NAME <ADDRESS> has been removed from LIST.") confirms the
    removal of a member who is leaving. A notice about a member the bot did not ask to remove changes
    nothing (a notice is easy to forge, and the roster must not lose a member on a forgery's word): it is
    audited and the Secretariat checks. Returns the member whose removal was confirmed, if any."""
    if "unsubscription notification" not in subject.lower():
        return None
    found = _UNSUBSCRIBED.search(text or "")
    if found is None:
        return None
    member = roster.on_list(bot.store, found.group(1))
    if member is None:
        return None
    if member.state is not MemberState.LEAVING:
        bot.store.audit(
            "mailman-removed-unasked",
            at=bot.now(),
            message_row=message_row,
            address=member.address,
            said=found.group(0),
        )
        bot.outbox.queue_mail(
            purpose="removal-secretariat",
            template="removal_secretariat.txt",
            context=notice_context(bot, member, unasked=True, said=found.group(0)),
            to=[bot.secretariat],
            request_id=member.request_id,
            cause_message=message_row,
        )
        return None
    confirmed(bot, member, how="Mailman's unsubscription notice", said=found.group(0))
    return member
