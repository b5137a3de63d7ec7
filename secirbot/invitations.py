"""Invitations: the Secretariat invites ccTLDs to the pilot by mailing their IANA administrative contacts.

`secirbot invite nl dk` resolves each ccTLD afresh, mails every administrative contact the invitation
(templates/invitation.txt: what the list is, how their staff ask to join) and records who was invited
when, from which IANA snapshot. `secirbot report` reads these records back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .iana.names import NotACcTLD, TldName, normalize_tld
from .intake import pilot_cctlds
from .store import iso

if TYPE_CHECKING:
    from .bot import Bot


@dataclass(frozen=True)
class InviteResult:
    name: str
    ok: bool
    message: str
    kind: str = "ok"  # ok | not-cctld | unresolved


def invite(bot: Bot, names: list[str], actor: str) -> list[InviteResult]:
    results = []
    pilot = pilot_cctlds(bot.rules)
    for text in names:
        try:
            name = normalize_tld(text)
        except NotACcTLD as exc:
            results.append(InviteResult(text, False, str(exc), "not-cctld"))
            continue
        resolution = bot.iana.resolve(name, fresh=True)
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
                )
        note = ""
        if bot.rules.pilot.enabled and name.ascii not in pilot:
            note = " (note: not in rules.yaml pilot.cctlds, so its requests are refused until you add it)"
        results.append(
            InviteResult(
                text, True, f"{name.display()}: invitation queued for {', '.join(a.email for a in admins)}{note}"
            )
        )
    return results


def _record(bot: Bot, name: TldName, recipients: list[str], snapshot_id: int, actor: str) -> None:
    now = bot.now()
    bot.store.execute(
        "INSERT INTO invitations (cctld, invited_at, invited_by, snapshot_id, recipients) VALUES (?, ?, ?, ?, ?)",
        (name.ascii, iso(now), actor, snapshot_id, json.dumps(recipients)),
    )
    bot.store.audit("invited", at=now, actor=actor, cctld=name.ascii, to=recipients, snapshot_id=snapshot_id)
