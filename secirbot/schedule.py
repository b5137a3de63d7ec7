"""Time-driven work, with every due time kept in the store: IANA retries, reminders, escalation, expiry,
the weekly digest, the re-check of IANA contacts, the check of Mailman's pending subscriptions.

`run_due_jobs` does whatever is due at `bot.now()` and is idempotent: each item's next due time is
moved (or cleared) in the same transaction that queues its mail, so running it twice, or after a
restart, never repeats a reminder, and work that fell due while the daemon was down runs once at start.
APScheduler (daemon.py) only decides *when* to call it; the store alone says what is due.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from apscheduler.triggers.cron import CronTrigger

from . import confirmations, delegation, roster, tokens, workflow
from .iana.names import parse_tld
from .iana.resolver import approvers_of
from .ledger import RequestState
from .mailman_rest import RestUnavailable
from .mailman_sync import check_pending, compare_roster
from .reports import digest_context
from .store import StoreError, from_iso, iso

if TYPE_CHECKING:
    from .bot import Bot

log = logging.getLogger(__name__)


def run_due_jobs(bot: Bot, lookups: bool = True) -> dict[str, int]:
    """Everything due now, in a fixed order; returns how many items of each kind were handled.
    `lookups=False` leaves the IANA lookups to a caller that runs them outside its lock."""
    return {
        "delegations": delegations_due(bot),
        "expired": expire_due(bot),
        "lookups": retry_due_lookups(bot) if lookups else 0,
        "escalations": escalate_due(bot),
        "reminders": remind_due(bot),
        "digest": digest_if_due(bot),
        "recheck": recheck_if_due(bot),
        "mailman_pending": pending_check_if_due(bot),
        "revets": revet_if_due(bot),
    }


def delegations_due(bot: Bot) -> int:
    """Delegated APPROVEs whose objection window ended without an OBJECT decide their requests."""
    decided = 0
    for waiting in delegation.due(bot.store, bot.now()):
        with bot.store.transaction():
            current = delegation.waiting(bot.store, waiting.request_id)
            if current is not None and current.id == waiting.id:
                decided += workflow.delegation_due(bot, current)
    return decided


def expire_due(bot: Bot) -> int:
    rows = bot.ledger.due_for_expiry(bot.now())
    for request in rows:
        with bot.store.transaction():
            current = bot.ledger.request(request.id)
            if current.is_open:
                workflow.expire(bot, current)
    return len(rows)


def retry_due_lookups(
    bot: Bot,
    guard: Callable[[], AbstractContextManager[object]] = nullcontext,
    stop: Callable[[], bool] = lambda: False,
    committed: Callable[[], None] = lambda: None,
) -> int:
    """IANA lookups that are due: the first one of each new request, and retries. The network call runs
    outside the transaction and outside `guard` (the daemon's work lock), so a slow IANA holds up no other
    mail; the state is re-read inside, so a lookup decided by another pass is applied once only.
    `committed` is called after each request's step is committed (the daemon wakes its sender)."""
    rows = bot.ledger.due_for_lookup(bot.now())
    for request in rows:
        if stop():  # the rest waits in the store for the next start
            break
        resolution = bot.iana.resolve(parse_tld(request.cctld), fresh=True)  # network: outside the txn
        try:
            with guard(), bot.store.transaction():
                current = bot.ledger.request(request.id)
                if current.state is not RequestState.RESOLVING or current.lookup_attempts != request.lookup_attempts:
                    continue
                if current.lookup_attempts == 0:
                    workflow.first_lookup(bot, current, resolution)
                else:
                    workflow.retry_lookup(bot, current, resolution)
            committed()
        except (sqlite3.Error, StoreError):
            raise
        except Exception as exc:  # ours (a broken template...): the request waits, the Secretariat hears
            log.exception("request #%s: the step after its IANA lookup failed", request.id)
            with guard(), bot.store.transaction():
                workflow.step_failed(bot, bot.ledger.request(request.id), f"{type(exc).__name__}: {exc}")
    return len(rows)


def escalate_due(bot: Bot) -> int:
    rows = bot.ledger.due_for_escalation(bot.now())
    for request in rows:
        with bot.store.transaction():
            workflow.escalate(bot, request, f"no decision since {workflow.when(request.created_at)}")
    return len(rows)


def remind_due(bot: Bot) -> int:
    rows = bot.ledger.due_for_reminder(bot.now())
    for approver in rows:
        with bot.store.transaction():
            workflow.remind(bot, approver)
    return len(rows)


def _claim_slot(bot: Bot, key: str, next_after: datetime, first_now: bool = False) -> bool:
    """True if the periodic job `key` is due now; then its next time is stored at once (so a crash in the
    job cannot make it run again and again). The first time, only its next time is stored, unless
    `first_now`: then it runs at once."""
    now = bot.now()
    meta_key = f"next:{key}"
    with bot.store.transaction():
        stored = bot.store.get_meta(meta_key)
        due = (stored is None and first_now) or (stored is not None and from_iso(stored) <= now)
        if stored is None or due:
            bot.store.set_meta(meta_key, iso(next_after))
    return due


def next_digest_time(bot: Bot, after: datetime) -> datetime:
    rules = bot.rules.digest
    trigger = CronTrigger(day_of_week=rules.day_of_week, hour=rules.hour, timezone=UTC)
    return trigger.get_next_fire_time(None, after + timedelta(seconds=1)).astimezone(UTC)


def digest_if_due(bot: Bot) -> int:
    if not bot.rules.digest.enabled or not _claim_slot(bot, "digest", next_digest_time(bot, bot.now())):
        return 0
    with bot.store.transaction():
        bot.outbox.queue_mail(
            purpose="digest", template="digest.txt", context=digest_context(bot), to=[bot.secretariat]
        )
        bot.store.audit("digest-sent", at=bot.now())
    return 1


def recheck_if_due(bot: Bot) -> int:
    if not _claim_slot(bot, "recheck", bot.now() + bot.rules.lookups.recheck_every):
        return 0
    return recheck_contacts(bot)


def revet_if_due(bot: Bot) -> int:
    """Once a day: send the member lists of the ccTLDs due for re-vetting (confirmations.revet_due)."""
    if not _claim_slot(bot, "revet", bot.now() + timedelta(days=1), first_now=True):
        return 0
    return revet_members(bot)


def revet_members(bot: Bot) -> int:
    """Each ccTLD with members whose re-vetting is due: its IANA contacts get the member list, each with a
    token reply address for REMOVE lines; the Secretariat a copy. Returns how many ccTLDs were asked."""
    asked = 0
    now = bot.now()
    for cctld in sorted(roster.counts_by_cctld(bot.store)):
        contacts = approvers_of(bot.store, cctld, bot.rules.approvers.roles)
        if not contacts:
            continue  # never looked up (imported members): the daily re-check fetches it first
        members = roster.members(bot.store, cctld, include_removed=False)
        why = confirmations.revet_due(
            confirmations.last_revet(bot.store, cctld),
            first_member_since=min(from_iso(m.since) for m in members),
            contacts=[c.email for c in contacts],
            now=now,
            every=bot.rules.revet.every,
        )
        if why is None:
            continue
        display = parse_tld(cctld).display()
        listed = [{"address": m.address, "name": m.name, "since": m.since} for m in members]
        base = {
            "bot": bot.bot_address,
            "secretariat": bot.secretariat,
            "list_address": bot.config.mailman.list,
            "cctld": display,
            "why": why,
            "members": listed,
        }
        with bot.store.transaction():
            for contact in contacts:
                token = confirmations.issue(
                    bot.store,
                    kind="revet",
                    cctld=cctld,
                    contact=contact.email,
                    address=None,
                    now=now,
                    valid=REVET_ANSWER_VALID,
                )
                bot.outbox.queue_mail(
                    purpose="revet",
                    template="revet.txt",
                    context={
                        **base,
                        "contact": contact.email,
                        "approver": {"email": contact.email, "name": contact.name},
                    },
                    to=[contact.email],
                    reply_to=tokens.reply_address(bot.bot_address, token),
                    language=bot.rules.languages.for_cctld(cctld),
                )
            bot.outbox.queue_mail(
                purpose="revet",
                template="revet.txt",
                context={**base, "contact": ", ".join(c.email for c in contacts), "approver": None},
                to=[bot.secretariat],
            )
            confirmations.revetted(bot.store, cctld, [c.email for c in contacts], now)
            bot.store.audit(
                "revet-sent", at=now, cctld=cctld, why=why, to=[c.email for c in contacts], members=len(listed)
            )
        asked += 1
    return asked


REVET_ANSWER_VALID = timedelta(days=30)


def recheck_contacts(bot: Bot) -> int:
    """Ask IANA again about every ccTLD with members or open requests; act on changed contacts."""
    cctlds = sorted(set(bot.ledger.cctlds_in_use()) | set(roster.counts_by_cctld(bot.store)))
    changed = 0
    for cctld in cctlds:
        resolution = bot.iana.resolve(parse_tld(cctld), fresh=True)
        if resolution.record is None:
            log.warning(
                "contact re-check of .%s: IANA gave no usable record (%s); keeping what we have",
                cctld,
                resolution.problem.kind if resolution.problem else "?",
            )
            continue
        with bot.store.transaction():
            result = workflow.contacts_checked(bot, cctld, resolution)
        changed += bool(result["requests"] or result["stale_members"])
    return changed


def pending_check_if_due(bot: Bot) -> int:
    if not bot.config.mailman.rest_url:
        return 0
    if not _claim_slot(bot, "mailman-pending", bot.now() + bot.rules.mailman.check_pending_every, first_now=True):
        return 0
    try:
        counts = check_pending(bot)
        counts.update(compare_roster(bot))
    except RestUnavailable as exc:
        log.warning("Mailman pending-subscription and roster check: %s", exc)
        return 0
    return sum(counts.values())
