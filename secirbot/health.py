"""`secirbot check --health`: is the running bot alive and keeping up? For container health checks.

Healthy means: the store opens, the bot's heartbeat (written on every pass of the daemon's loop and at
the end of every `run --once`) is recent, the last delivery attempt could reach the SMTP server (or no
mail waits), and no outbox item has been waiting much longer than its retries allow. It opens the store
read-only and writes nothing, so it is cheap enough to run every 30 seconds and works from a second
process. Its exit status is 0 (healthy) or 1 (unhealthy) only: Docker reserves every other status.

The outbox records the outcome of each SMTP connection attempt in the store's meta table
(`LAST_DELIVERY_KEY`, see `record_delivery`), so that a second process can tell "SMTP is down" from
"the bot never ran".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TextIO

from .config import Config
from .store import Store, StoreError, from_iso, iso, utcnow

HEARTBEAT_KEY = "heartbeat"
LAST_DELIVERY_KEY = "last_delivery"
HEARTBEAT_MAX_AGE = timedelta(minutes=5)
OUTBOX_MAX_AGE = timedelta(hours=6)

SMTP_OK, SMTP_UNREACHABLE = "connected", "smtp-unreachable"


@dataclass(frozen=True)
class LastDelivery:
    """The last SMTP connection attempt of any secirbot process on this store."""

    outcome: str  # SMTP_OK | SMTP_UNREACHABLE
    at: str  # when it was tried (store time, ISO)
    since: str | None = None  # unreachable: the first failed attempt of this outage
    error: str = ""  # unreachable: what the connection attempt said


def last_delivery(store: Store) -> LastDelivery | None:
    """What the store says about the last SMTP connection attempt; None if none was ever recorded."""
    text = store.get_meta(LAST_DELIVERY_KEY)
    if text is None:
        return None
    try:
        data = json.loads(text)
        return LastDelivery(str(data["outcome"]), str(data["at"]), data.get("since"), str(data.get("error", "")))
    except (ValueError, KeyError, TypeError):
        return None  # written by something else: as good as no record


def record_delivery(store: Store, at: datetime, error: str | None) -> LastDelivery:
    """Record one SMTP connection attempt (error None: it connected). Call outside a transaction or
    inside the caller's; an outage keeps the moment it began across processes."""
    with store.transaction():
        if error is None:
            entry = LastDelivery(SMTP_OK, iso(at))
        else:
            previous = last_delivery(store)
            began = previous.since if previous and previous.outcome == SMTP_UNREACHABLE else None
            entry = LastDelivery(SMTP_UNREACHABLE, iso(at), began or iso(at), error)
        store.set_meta(LAST_DELIVERY_KEY, json.dumps(asdict(entry), ensure_ascii=False))
    return entry


def queued_mail(store: Store) -> tuple[int, str | None]:
    """How many mails (not REST calls) wait in the outbox, and since when the oldest waits."""
    row = store.one(
        "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox WHERE state = 'queued' AND kind = 'mail'"
    )
    return (int(row["n"]), row["oldest"]) if row else (0, None)


def smtp_outage(store: Store) -> str | None:
    """ "SMTP unreachable, N mail(s) queued since T (...)" if the last attempt could not connect and
    mail waits for it; None otherwise."""
    last = last_delivery(store)
    if last is None or last.outcome != SMTP_UNREACHABLE:
        return None
    count, oldest = queued_mail(store)
    if not count:
        return None
    return (
        f"SMTP unreachable, {count} mail(s) queued since {oldest} (no connection since {last.since}; "
        f"last attempt {last.at}: {last.error})"
    )


def health_check(config: Config, out: TextIO) -> int:
    """0 healthy, 1 not; one line saying why."""
    if not config.store.path.exists():
        print(f"unhealthy: no store at {config.store.path} (has the bot ever run?)", file=out)
        return 1
    try:
        store = Store(config.store.path, readonly=True)
    except StoreError as exc:
        print(f"unhealthy: {exc}", file=out)
        return 1
    try:
        return _judge(store, out)
    except StoreError as exc:
        print(f"unhealthy: {exc}", file=out)
        return 1
    finally:
        store.close()


def _judge(store: Store, out: TextIO) -> int:
    if store.version == 0:  # a file the bot has not set up yet (it would, at its first start)
        print(f"unhealthy: the store {store.path} has no tables yet (has the bot ever run?)", file=out)
        return 1
    now = utcnow()
    beat = store.get_meta(HEARTBEAT_KEY)
    if beat is None:
        print("unhealthy: the bot has not reported a heartbeat yet", file=out)
        return 1
    age = now - from_iso(beat)
    if age > HEARTBEAT_MAX_AGE:
        print(f"unhealthy: last heartbeat {int(age.total_seconds())} s ago (at {beat})", file=out)
        return 1
    outage = smtp_outage(store)
    if outage is not None:
        print(f"unhealthy: {outage}", file=out)
        return 1
    row = store.one("SELECT MIN(created_at) AS oldest, COUNT(*) AS n FROM outbox WHERE state = 'queued'")
    if row and row["oldest"] and now - from_iso(row["oldest"]) > OUTBOX_MAX_AGE:
        print(f"unhealthy: {row['n']} mail(s) queued, the oldest since {row['oldest']}", file=out)
        return 1
    print(f"healthy: heartbeat {int(age.total_seconds())} s ago, {row['n'] if row else 0} mail(s) queued", file=out)
    return 0
