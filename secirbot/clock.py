"""The bot's one text form of a moment (UTC, seconds, 'Z': sorts as text) and its clock. Pure: the store,
the IANA records and the state machine all write moments this way without depending on each other."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    """The one text form of a moment in the store: UTC, seconds, 'Z' (sorts as text)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
