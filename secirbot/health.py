"""`secirbot check --health`: is the running bot alive and keeping up? For container health checks.

Healthy means: the store opens, the daemon's heartbeat (written on every pass of its loop) is recent, and
no outbox item has been waiting much longer than its retries allow. It reads only the store, so it is
cheap enough to run every 30 seconds and works from a second process.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TextIO

from .config import Config
from .store import Store, StoreError, from_iso, utcnow

HEARTBEAT_KEY = "heartbeat"
HEARTBEAT_MAX_AGE = timedelta(minutes=5)
OUTBOX_MAX_AGE = timedelta(hours=6)


def health_check(config: Config, out: TextIO) -> int:
    """0 healthy, 1 not; one line saying why."""
    if not config.store.path.exists():
        print(f"unhealthy: no store at {config.store.path} (has the bot ever run?)", file=out)
        return 1
    try:
        store = Store(config.store.path)
    except StoreError as exc:
        print(f"unhealthy: {exc}", file=out)
        return 1
    try:
        now = utcnow()
        beat = store.get_meta(HEARTBEAT_KEY)
        if beat is None:
            print("unhealthy: the bot has not reported a heartbeat yet", file=out)
            return 1
        age = now - from_iso(beat)
        if age > HEARTBEAT_MAX_AGE:
            print(f"unhealthy: last heartbeat {int(age.total_seconds())} s ago (at {beat})", file=out)
            return 1
        row = store.one("SELECT MIN(created_at) AS oldest, COUNT(*) AS n FROM outbox WHERE state = 'queued'")
        if row and row["oldest"] and now - from_iso(row["oldest"]) > OUTBOX_MAX_AGE:
            print(f"unhealthy: {row['n']} mail(s) queued, the oldest since {row['oldest']}", file=out)
            return 1
        print(f"healthy: heartbeat {int(age.total_seconds())} s ago, {row['n'] if row else 0} mail(s) queued",
              file=out)
        return 0
    finally:
        store.close()
