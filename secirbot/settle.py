"""What deliveries answered, fed to the stages that own the consequences.

The outbox only delivers: it writes what an attempt answered as a `delivery_events` row in the transaction
that records the attempt (outbox.DeliveryEvent). `settle` reads the events not yet settled, oldest first,
and writes each one's consequences and its `settled_at` in one transaction:
- `mailman-answered` for a subscription: the request's state machine (lifecycle.MailmanAnswered) sets its
  `mailman_status` and, on a conflict, tells the Secretariat;
- `mailman-answered` for a removal: the roster follows Mailman's answer (membership.removal_answered);
- `failed`: an approver whose approval request bounced for good counts as unreachable, and the
  Secretariat hears of the failure (workflow.delivery_failed).

Its callers run it after every delivery and when the bot starts, so a crash between an attempt and its
settling loses nothing and settles nothing twice.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING

from . import membership, workflow
from .store import StoreError

if TYPE_CHECKING:
    from .bot import Bot
    from .outbox import DeliveryEvent

log = logging.getLogger(__name__)


def settle(bot: Bot) -> int:
    """Write the consequences of every unsettled delivery event; returns how many were settled."""
    events = bot.outbox.unsettled()
    for event in events:
        try:
            with bot.store.transaction():
                _consequences(bot, event)
                bot.outbox.settled(event)
        except (sqlite3.Error, StoreError):
            raise  # a broken store stops the bot; the event stays unsettled for the next start
        except Exception as exc:
            # Our fault (a template, a row that no longer fits): the event must not be retried for ever,
            # and what it would have changed is for a person to look at.
            log.exception("delivery event #%s (outbox #%s) could not be settled", event.id, event.outbox_id)
            with bot.store.transaction():
                bot.store.audit(
                    "delivery-event-unsettled",
                    at=bot.now(),
                    request_id=event.request_id,
                    outbox_id=event.outbox_id,
                    kind=event.kind,
                    error=f"{type(exc).__name__}: {exc}",
                )
                bot.outbox.settled(event)
    return len(events)


def _consequences(bot: Bot, event: DeliveryEvent) -> None:
    if event.kind == "failed":
        workflow.delivery_failed(bot, event)
    elif event.call is not None and event.call.get("action") == "remove":
        membership.removal_answered(bot, event)
    else:
        workflow.mailman_answered(bot, event)
