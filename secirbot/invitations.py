"""Invitations: the Secretariat invites ccTLDs to the pilot by mailing their IANA administrative contacts.

`secirbot invite nl dk` resolves each ccTLD afresh, mails every administrative contact the invitation
(templates/invitation.txt: what the list is, how their staff ask to join) and records who was invited
when, from which IANA snapshot. `secirbot report` reads these records back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .iana.names import NotACcTLD, TldName, normalize_tld
from .intake import pilot_cctlds
from .store import from_iso, iso

if TYPE_CHECKING:
    from .bot import Bot
    from .iana.resolver import Resolution


@dataclass(frozen=True)
class InviteResult:
    name: str
    ok: bool
    message: str
    kind: str = "ok"  # ok | not-cctld | unresolved | refused (invited recently) | outside-pilot


def invite(bot: Bot, names: list[str], actor: str, *, dry_run: bool = False, again: bool = False) -> list[InviteResult]:
    """Invite each ccTLD's administrative contacts. `dry_run` says who would get what and writes and sends
    nothing; a ccTLD invited within `invitations.min_interval` is refused unless `again`, and one outside an
    enabled pilot is refused always."""
    results = []
    pilot = pilot_cctlds(bot.rules)
    for text in names:
        try:
            name = normalize_tld(text)
        except NotACcTLD as exc:
            results.append(InviteResult(text, False, str(exc), "not-cctld"))
            continue
        # An invitation asks the ccTLD's staff to write in, and while the pilot is on the bot refuses every
        # request from a ccTLD outside it: inviting them would only earn them a refusal. No --again here:
        # the way in is to add the ccTLD to the pilot, which is a decision recorded in rules.yaml.
        if bot.rules.pilot.enabled and name.ascii not in pilot:
            results.append(
                InviteResult(
                    text,
                    False,
                    f"{name.display()}: not invited: it is not in rules.yaml pilot.cctlds, so the bot would refuse "
                    "its staff's requests; add it to pilot.cctlds first (and reload: SIGHUP), then invite",
                    "outside-pilot",
                )
            )
            continue
        last = _last_invited(bot, name)
        if last is not None and not again and bot.now() - last < bot.rules.invitations.min_interval:
            results.append(
                InviteResult(
                    text,
                    False,
                    f"{name.display()}: not invited: already invited at {iso(last)}, within rules.yaml "
                    "invitations.min_interval; use --again to invite anyway",
                    "refused",
                )
            )
            continue
        resolution = _resolve_leaving_no_trace(bot, name) if dry_run else bot.iana.resolve(name, fresh=True)
        if resolution.record is None:
            problem = resolution.problem.summary if resolution.problem else "no answer"
            results.append(
                InviteResult(
                    text,
                    False,
                    f"{name.display()}: cannot resolve the IANA contacts now ({problem}); nothing was sent",
                    "unresolved",
                )
            )
            continue
        admins = resolution.record.approvers(("administrative",))
        if dry_run:
            results.append(
                InviteResult(
                    text,
                    True,
                    f"{name.display()}: would mail invitation.txt to {', '.join(a.email for a in admins)} "
                    "(dry run: nothing sent or recorded)",
                )
            )
            continue
        with bot.store.transaction():
            _record(bot, name, [a.email for a in admins], resolution.snapshot_id, actor)
            for admin in admins:
                bot.outbox.queue_mail(
                    purpose="invitation",
                    template="invitation.txt",
                    context={
                        "cctld_display": name.display(),
                        "cctld": name.ascii,
                        "contact": {"email": admin.email, "name": admin.name},
                        "organisation": resolution.record.organisation,
                        "bot": bot.bot_address,
                        "secretariat": bot.secretariat,
                        "list_address": bot.config.mailman.list,
                        "seats": bot.rules.requests.seats_per_cctld,
                    },
                    to=[admin.email],
                    language=bot.rules.languages.for_cctld(name.ascii),
                )
        results.append(
            InviteResult(text, True, f"{name.display()}: invitation queued for {', '.join(a.email for a in admins)}")
        )
    return results


class _Undo(Exception):
    pass


def _resolve_leaving_no_trace(bot: Bot, name: TldName) -> Resolution:
    # A resolution always keeps a snapshot row; a dry run promises to write nothing, so it resolves inside
    # a transaction that is rolled back (the answer, read from memory, stays usable).
    found: list[Resolution] = []
    try:
        with bot.store.transaction():
            found.append(bot.iana.resolve(name, fresh=False))
            raise _Undo
    except _Undo:
        pass
    return found[0]


def _last_invited(bot: Bot, name: TldName) -> datetime | None:
    row = bot.store.execute("SELECT MAX(invited_at) AS at FROM invitations WHERE cctld = ?", (name.ascii,)).fetchone()
    return from_iso(row["at"]) if row and row["at"] else None


def _record(bot: Bot, name: TldName, recipients: list[str], snapshot_id: int, actor: str) -> None:
    now = bot.now()
    bot.store.execute(
        "INSERT INTO invitations (cctld, invited_at, invited_by, snapshot_id, recipients) VALUES (?, ?, ?, ?, ?)",
        (name.ascii, iso(now), actor, snapshot_id, json.dumps(recipients)),
    )
    bot.store.audit("invited", at=now, actor=actor, cctld=name.ascii, to=recipients, snapshot_id=snapshot_id)
