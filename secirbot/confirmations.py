"""Mail that asks an IANA contact to confirm something about its ccTLD's members, and the answers.

Two kinds, each sent with a token reply address of its own and answered like an approval request (the
same sender checks; a person behind a role address as in delegation.py):
- `remove`: a contact mailed `remove ADDRESS`; the bot asks "reply CONFIRM to remove ADDRESS", so that
  a forged From can never take a member off (the question goes to the real contact).
- `revet`: every `revet.every`, and when a ccTLD's IANA contacts change, each contact gets the list of
  the ccTLD's members: "reply REMOVE ADDRESS (one per line) for anyone who should no longer be on the
  list; no answer keeps everyone".

This module alone reads and writes the `confirmations` and `revets` tables; reading the answer is pure.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from . import tokens
from .store import Store, from_iso, iso

REMOVE_CONFIRM_VALID = timedelta(days=14)


@dataclass(frozen=True)
class Confirmation:
    id: int
    kind: str  # remove | revet
    cctld: str
    contact: str
    address: str | None
    state: str  # open | used
    issued_at: str
    expires_at: str


def _confirmation(row: sqlite3.Row) -> Confirmation:
    return Confirmation(
        row["id"],
        row["kind"],
        row["cctld"],
        row["contact"],
        row["address"],
        row["state"],
        row["issued_at"],
        row["expires_at"],
    )


def issue(
    store: Store, *, kind: str, cctld: str, contact: str, address: str | None, now: datetime, valid: timedelta
) -> str:
    """A new confirmation; returns its token (only the hash is kept)."""
    token = tokens.mint()
    store.execute(
        "INSERT INTO confirmations (token_hash, kind, cctld, contact, address, state, issued_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, 'open', ?, ?)",
        (tokens.digest(token), kind, cctld, contact, address, iso(now), iso(now + valid)),
    )
    return token


def by_token(store: Store, token: str) -> Confirmation | None:
    row = store.one("SELECT * FROM confirmations WHERE token_hash = ?", (tokens.digest(token),))
    return _confirmation(row) if row is not None else None


def open_question(store: Store, kind: str, address: str, contact: str, now: datetime) -> bool:
    """Whether an unanswered, unexpired question of this kind about `address` is out to `contact`."""
    return (
        store.count(
            "SELECT COUNT(*) FROM confirmations WHERE kind = ? AND address = ? COLLATE NOCASE"
            " AND contact = ? COLLATE NOCASE AND state = 'open' AND expires_at > ?",
            (kind, address, contact, iso(now)),
        )
        > 0
    )


def is_open(confirmation: Confirmation, now: datetime) -> bool:
    return confirmation.state == "open" and now < from_iso(confirmation.expires_at)


def use(store: Store, confirmation: Confirmation, now: datetime) -> None:
    store.execute("UPDATE confirmations SET state = 'used', used_at = ? WHERE id = ?", (iso(now), confirmation.id))


# --- re-vetting bookkeeping -----------------------------------------------------------------------------


def last_revet(store: Store, cctld: str) -> tuple[datetime, tuple[str, ...]] | None:
    row = store.one("SELECT last_at, contacts FROM revets WHERE cctld = ?", (cctld,))
    if row is None:
        return None
    return from_iso(row["last_at"]), tuple(c for c in row["contacts"].split(",") if c)


def all_revets(store: Store) -> dict[str, str]:
    return {r["cctld"]: r["last_at"] for r in store.all("SELECT cctld, last_at FROM revets")}


def revetted(store: Store, cctld: str, contacts: Sequence[str], now: datetime) -> None:
    store.execute(
        "INSERT INTO revets (cctld, last_at, contacts) VALUES (?, ?, ?)"
        " ON CONFLICT (cctld) DO UPDATE SET last_at = excluded.last_at, contacts = excluded.contacts",
        (cctld, iso(now), ",".join(sorted(c.lower() for c in contacts))),
    )


def revet_due(
    last: tuple[datetime, tuple[str, ...]] | None,
    *,
    first_member_since: datetime,
    contacts: Sequence[str],
    now: datetime,
    every: timedelta,
) -> str | None:
    """Why a ccTLD's members are due for re-vetting now, or None (pure). Never re-vetted: a year (`every`)
    after its first member joined. A change of its IANA contacts re-vets at once."""
    if last is None:
        return "first re-vetting" if now - first_member_since >= every else None
    at, known = last
    if tuple(sorted(c.lower() for c in contacts)) != known:
        return "the ccTLD's IANA contacts changed"
    return "the yearly re-vetting" if now - at >= every else None


# --- reading an answer (pure) ---------------------------------------------------------------------------

_CONFIRM = re.compile(r"^\W*confirm\W*$", re.IGNORECASE)
_REMOVE = re.compile(r"^\W*remove\s*:?\s+<?([^\s<>@]+@[^\s<>@]+?)>?[\s.,;]*$", re.IGNORECASE)


def says_confirm(first_line: str) -> bool:
    return bool(_CONFIRM.match(first_line.strip()))


@dataclass(frozen=True)
class RevetAnswer:
    remove: tuple[str, ...]  # addresses named on REMOVE lines, in order, each once
    other_lines: int  # lines that are neither REMOVE nor empty (a note; counted, never acted on)


def read_revet_answer(new_text: str) -> RevetAnswer:
    remove: list[str] = []
    other = 0
    for line in new_text.splitlines():
        if not line.strip():
            continue
        found = _REMOVE.match(line)
        if found is None:
            other += 1
        elif found.group(1).lower() not in (a.lower() for a in remove):
            remove.append(found.group(1))
    return RevetAnswer(tuple(remove), other)
