"""Mailman's side of the roster, read over REST on `check_pending_every`: pending subscriptions that were
not vetted here are reported (or rejected), vetted ones accepted, and members added or removed behind the
bot's back show up on the roster. The REST client itself is `mailman_rest`; this module owns what its
answers change here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import membership, roster
from .mailman_rest import MailmanRest, token_digest
from .mailman_rest import list_id as mailman_list_id

if TYPE_CHECKING:
    from .bot import Bot


def check_pending(bot: Bot) -> dict[str, int]:
    """Accept pending subscriptions of addresses vetted here; report (and, if the rules say so, reject)
    the others. Each pending request is reported once."""
    config = bot.config.mailman
    client = MailmanRest(config)
    list_id = mailman_list_id(config.list)
    counts = {"accepted": 0, "reported": 0, "rejected": 0}
    for entry in client.pending_subscriptions(list_id):
        address, token = str(entry.get("email", "")), str(entry.get("token", ""))
        if not token:
            continue
        digest = token_digest(token)
        vetted = bot.ledger.latest_approved(address.lower())
        if vetted is not None:
            status = client.moderate(list_id, token, "accept")
            with bot.store.transaction():
                if status == 204:  # rest/sub_moderation.py: accepted = subscribed now
                    bot.ledger.set_mailman_status(vetted, "member", now=bot.now())
                bot.store.audit(
                    "mailman-moderation-accepted",
                    at=bot.now(),
                    request_id=vetted,
                    address=address,
                    token=digest,
                    http=status,
                )
            counts["accepted"] += 1
            continue
        seen = bot.store.one(
            "SELECT 1 FROM audit WHERE action = 'mailman-unvetted' AND details LIKE ?", (f'%"token": "{digest}"%',)
        )
        if seen is not None:
            continue
        reject = bot.rules.mailman.reject_unvetted
        rejected = client.moderate(list_id, token, "reject") if reject else None
        with bot.store.transaction():
            bot.store.audit(
                "mailman-unvetted", at=bot.now(), address=address, token=digest, rejected=bool(reject), http=rejected
            )
            bot.outbox.queue_mail(
                purpose="mailman-unvetted",
                template="mailman_unvetted.txt",
                context={
                    "address": address,
                    "display_name": entry.get("display_name") or "",
                    "when": str(entry.get("request_date", "")),
                    "rejected": bool(reject),
                    "list_address": config.list,
                    "bot": bot.bot_address,
                },
                to=[bot.secretariat],
            )
        counts["reported"] += 1
        counts["rejected"] += bool(reject)
    return counts


def compare_roster(bot: Bot) -> dict[str, int]:
    """Members added or removed in Mailman behind the bot's back show up (on `check_pending_every`).

    Mailman's REST answer is authenticated, unlike a notice by mail, so the roster follows it: a member
    gone from Mailman is `removed` (the one who was `leaving` is confirmed), and an address Mailman has
    that the roster does not is added as source `mailman` (its ccTLD inferred from its domain, else left
    empty for the Secretariat to place). A member whose subscription is still under way is left alone.
    The Secretariat hears of each change once."""
    config = bot.config.mailman
    found = MailmanRest(config).member_addresses(mailman_list_id(config.list))
    counts = {"gone": 0, "added": 0}
    with bot.store.transaction():
        gone, unknown = roster.found_in_mailman(bot.store, [address for address, _ in found])
        names = {address.lower(): name for address, name in found}
        removed, added = [], []
        for member in gone:
            status = None
            if member.request_id is not None:
                status = bot.ledger.mailman_status(member.request_id)
            settled = member.state is roster.MemberState.LEAVING or member.source is not roster.Source.ADMITTED
            if not (settled or status == "member"):
                continue  # approved, but Mailman has not made it a member yet (confirmation, moderation)
            membership.confirmed(bot, member, how="not a member in Mailman any more (Mailman REST roster)")
            removed.append(member.address)
        for address in unknown:
            roster.found_unvetted(bot.store, address, names.get(address.lower(), ""), now=bot.now())
            added.append(address)
        if removed or added:
            bot.store.audit("mailman-roster-compared", at=bot.now(), removed=removed, added=added)
            bot.outbox.queue_mail(
                purpose="mailman-roster",
                template="mailman_roster_changed.txt",
                context={"removed": removed, "added": added, "list_address": config.list, "bot": bot.bot_address},
                to=[bot.secretariat],
            )
    counts["gone"], counts["added"] = len(removed), len(added)
    return counts
