"""Time-driven work, with every due time kept in the store: IANA retries, reminders, escalation, expiry.

`run_due_jobs` does whatever is due at `bot.now()` and is idempotent: each item's next due time is
moved (or cleared) in the same transaction that queues its mail, so running it twice, or after a
restart, never repeats a reminder, and work that fell due while the daemon was down runs once at start.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import workflow
from .iana.names import parse_tld
from .store import iso

if TYPE_CHECKING:
    from .bot import Bot

log = logging.getLogger(__name__)


def run_due_jobs(bot: Bot) -> dict[str, int]:
    """Everything due now, in a fixed order; returns how many items of each kind were handled."""
    return {
        "expired": expire_due(bot),
        "lookups": retry_due_lookups(bot),
        "escalations": escalate_due(bot),
        "reminders": remind_due(bot),
    }


def expire_due(bot: Bot) -> int:
    now = iso(bot.now())
    rows = bot.store.all("SELECT * FROM requests WHERE state IN ('resolving', 'pending') AND expires_at <= ?",
                         (now,))
    for request in rows:
        with bot.store.transaction():
            current = workflow.get_request(bot, request["id"])
            if current["state"] in workflow.OPEN_STATES:
                workflow.expire(bot, current)
    return len(rows)


def retry_due_lookups(bot: Bot) -> int:
    rows = bot.store.all("SELECT * FROM requests WHERE state = 'resolving' AND next_lookup_at <= ?",
                         (iso(bot.now()),))
    for request in rows:
        resolution = bot.iana.resolve(parse_tld(request["cctld"]), fresh=True)  # network: outside the txn
        with bot.store.transaction():
            current = workflow.get_request(bot, request["id"])
            if current["state"] == "resolving":
                workflow.retry_lookup(bot, current, resolution)
    return len(rows)


def escalate_due(bot: Bot) -> int:
    rows = bot.store.all("SELECT * FROM requests WHERE state = 'pending' AND next_escalation_at <= ?",
                         (iso(bot.now()),))
    for request in rows:
        with bot.store.transaction():
            workflow.escalate(bot, request, f"no decision since {workflow.when(request['created_at'])}")
    return len(rows)


def remind_due(bot: Bot) -> int:
    rows = bot.store.all(
        "SELECT a.* FROM approvers a JOIN requests r ON r.id = a.request_id"
        " WHERE a.state = 'asked' AND r.state = 'pending' AND a.next_reminder_at <= ?", (iso(bot.now()),))
    for approver in rows:
        with bot.store.transaction():
            workflow.remind(bot, approver)
    return len(rows)
