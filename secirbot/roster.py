"""The roster: who is on the list, for which ccTLD, since when, admitted by whom, and who left.

This module alone reads and writes the `members` table. A row is made when a request is approved (source
`admitted`), when the Secretariat imports an existing list (`imported`, `secirbot members import`), or when
Mailman reports a member the bot never admitted (`mailman`). A row is never deleted: leaving and removal
change its state, so that the roster keeps the whole history an auditor asks for.

States: `member` (on the list), `leaving` (the removal is asked of Mailman or of the Secretariat and not yet
confirmed), `removed` (off the list). Seats per ccTLD count `member` and `leaving`.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from .iana.names import NotACcTLD, normalize_tld, parse_tld
from .message import address_key
from .store import Store, iso


class MemberState(StrEnum):
    MEMBER = "member"
    LEAVING = "leaving"
    REMOVED = "removed"


ON_LIST = (MemberState.MEMBER, MemberState.LEAVING)


class Source(StrEnum):
    ADMITTED = "admitted"  # approved through the bot
    IMPORTED = "imported"  # on the list before the bot; `secirbot members import`
    MAILMAN = "mailman"  # found in Mailman without the bot's approval


@dataclass(frozen=True)
class Member:
    id: int
    address: str
    cctld: str  # A-label
    name: str
    state: MemberState
    source: Source
    since: str
    approved_by: str
    request_id: int | None
    updated_at: str
    removed_at: str | None
    removed_by: str | None
    reason: str | None

    def as_json(self) -> dict[str, Any]:
        """The pinned JSON shape of `secirbot members --json` (address, cctld, state, since, approved_by ...)."""
        return {
            "address": self.address,
            "cctld": self.cctld,
            "cctld_unicode": _unicode(self.cctld),
            "name": self.name,
            "state": self.state.value,
            "since": self.since,
            "approved_by": self.approved_by,
            "source": self.source.value,
            "request_id": self.request_id,
            "removed_at": self.removed_at,
            "removed_by": self.removed_by,
            "reason": self.reason,
        }


def _unicode(cctld: str) -> str:
    if not cctld:
        return "?"
    try:
        return parse_tld(cctld).unicode
    except NotACcTLD:
        return cctld


def _member(row: sqlite3.Row) -> Member:
    return Member(
        id=row["id"],
        address=row["address"],
        cctld=row["cctld"],
        name=row["name"] or "",
        state=MemberState(row["state"]),
        source=Source(row["source"]),
        since=row["since"],
        approved_by=row["approved_by"] or "",
        request_id=row["request_id"],
        updated_at=row["updated_at"],
        removed_at=row["removed_at"],
        removed_by=row["removed_by"],
        reason=row["reason"],
    )


def find(store: Store, address: str) -> Member | None:
    """The roster row of this address in any state (compared by `message.address_key`), or None."""
    row = store.one("SELECT * FROM members WHERE address_key = ?", (address_key(address),))
    return _member(row) if row is not None else None


def on_list(store: Store, address: str) -> Member | None:
    """The member (or leaving member) with this address, or None."""
    member = find(store, address)
    return member if member is not None and member.state in ON_LIST else None


def seats_taken(store: Store, cctld: str) -> int:
    """Members of this ccTLD still on the list (a member who is leaving keeps the seat until gone)."""
    return store.count("SELECT COUNT(*) FROM members WHERE cctld = ? AND state IN ('member', 'leaving')", (cctld,))


def members(store: Store, cctld: str | None = None, *, include_removed: bool = True) -> list[Member]:
    sql, params = "SELECT * FROM members", []
    where = []
    if cctld is not None:
        where.append("cctld = ?")
        params.append(cctld)
    if not include_removed:
        where.append("state IN ('member', 'leaving')")
    if where:
        sql += " WHERE " + " AND ".join(where)
    return [_member(r) for r in store.all(sql + " ORDER BY cctld, address_key", tuple(params))]


def counts_by_cctld(store: Store) -> dict[str, int]:
    rows = store.all(
        "SELECT cctld, COUNT(*) AS n FROM members WHERE state IN ('member', 'leaving') AND cctld != '' GROUP BY cctld"
    )
    return {r["cctld"]: int(r["n"]) for r in rows}


def _put(
    store: Store,
    *,
    address: str,
    cctld: str,
    name: str,
    source: Source,
    since: datetime,
    approved_by: str,
    request_id: int | None,
) -> Member:
    """Insert, or bring a removed row back on the list (a member re-admitted keeps one row, new history)."""
    key, when = address_key(address), iso(since)
    store.execute(
        "INSERT INTO members (address, address_key, cctld, name, state, source, since, approved_by, request_id,"
        " updated_at) VALUES (?, ?, ?, ?, 'member', ?, ?, ?, ?, ?)"
        " ON CONFLICT (address_key) DO UPDATE SET address = excluded.address, cctld = excluded.cctld,"
        " name = excluded.name, state = 'member', source = excluded.source, since = excluded.since,"
        " approved_by = excluded.approved_by, request_id = excluded.request_id, updated_at = excluded.updated_at,"
        " removed_at = NULL, removed_by = NULL, reason = NULL",
        (address, key, cctld, name or None, source.value, when, approved_by or None, request_id, when),
    )
    member = find(store, address)
    assert member is not None  # just written, in this transaction
    return member


def admit(store: Store, request: sqlite3.Row | dict[str, Any], *, now: datetime, actor: str) -> Member:
    """An approved request puts its requester on the roster (inside the decision's transaction)."""
    member = _put(
        store,
        address=request["requester"],
        cctld=request["cctld"],
        name=request["requester_name"] or "",
        source=Source.ADMITTED,
        since=now,
        approved_by=request["decided_by"] or actor,
        request_id=request["id"],
    )
    store.audit(
        "member-added", at=now, actor=actor, request_id=request["id"], address=member.address, cctld=member.cctld
    )
    return member


def mark_leaving(store: Store, member: Member, *, now: datetime, actor: str, reason: str) -> None:
    store.execute(
        "UPDATE members SET state = 'leaving', updated_at = ?, removed_by = ?, reason = ? WHERE id = ?",
        (iso(now), actor, reason or None, member.id),
    )
    store.audit("member-leaving", at=now, actor=actor, address=member.address, cctld=member.cctld, reason=reason)


def mark_removed(store: Store, member: Member, *, now: datetime, actor: str, reason: str, how: str) -> None:
    """Off the list. `how` says what confirmed it (REST answer, Mailman's notice, the Secretariat)."""
    store.execute(
        "UPDATE members SET state = 'removed', updated_at = ?, removed_at = ?, removed_by = COALESCE(?, removed_by),"
        " reason = COALESCE(?, reason) WHERE id = ?",
        (iso(now), iso(now), actor or None, reason or None, member.id),
    )
    store.audit(
        "member-removed", at=now, actor=actor, address=member.address, cctld=member.cctld, reason=reason, how=how
    )


# --- taking over an existing list -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportEntry:
    address: str
    cctld: str | None  # None: say so, do not guess
    name: str = ""


@dataclass
class ImportResult:
    added: list[str]
    already: list[str]  # on the roster already (admitted or imported before)
    unplaced: list[tuple[str, str]]  # (address, why): for the Secretariat to place by hand


def infer_cctld(address: str) -> str | None:
    """The ccTLD of an address's own domain (`sec@sidn.nl` -> `nl`), or None when the domain is not under
    a ccTLD (`x@gmail.com`): a gTLD address says nothing about the registry its owner works for."""
    domain = address.rpartition("@")[2].rstrip(".").lower()
    if "." not in domain:
        return None
    try:
        return normalize_tld(domain.rsplit(".", 1)[1]).ascii
    except NotACcTLD:
        return None


def read_csv(text: str) -> list[ImportEntry]:
    """`address,cctld[,name]` per line; a header line naming `address` is skipped; `#` starts a comment.
    An empty ccTLD column is inferred from the address (see infer_cctld), never guessed beyond that."""
    entries = []
    for row in csv.reader(io.StringIO(text)):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        if row[0].strip().lower() in ("address", "email"):
            continue
        address = row[0].strip()
        cctld = row[1].strip() if len(row) > 1 and row[1].strip() else None
        name = row[2].strip() if len(row) > 2 else ""
        entries.append(ImportEntry(address, cctld, name))
    return entries


def import_members(
    store: Store, entries: Iterable[ImportEntry], *, now: datetime, actor: str, origin: str, dry_run: bool = False
) -> ImportResult:
    """Put an existing list's members on the roster as `imported` (call inside a transaction unless dry)."""
    from .message import is_plain_address

    result = ImportResult([], [], [])
    seen: set[str] = set()
    for entry in entries:
        address = entry.address
        if not is_plain_address(address):
            result.unplaced.append((address, "not a plain e-mail address"))
            continue
        key = address_key(address)
        if key in seen:
            continue
        seen.add(key)
        written = entry.cctld if entry.cctld is not None else infer_cctld(address)
        if written is None:
            result.unplaced.append((address, "no ccTLD given and the address's domain is not under a ccTLD"))
            continue
        try:
            name = normalize_tld(written)
        except NotACcTLD as exc:
            result.unplaced.append((address, str(exc)))
            continue
        current = on_list(store, address)
        if current is not None:
            result.already.append(address)
            continue
        result.added.append(address)
        if dry_run:
            continue
        member = _put(
            store,
            address=address,
            cctld=name.ascii,
            name=entry.name,
            source=Source.IMPORTED,
            since=now,
            approved_by=f"imported from {origin}",
            request_id=None,
        )
        store.audit("member-imported", at=now, actor=actor, address=member.address, cctld=member.cctld, origin=origin)
    return result


def found_unvetted(store: Store, address: str, name: str, *, now: datetime) -> Member:
    """An address Mailman has as a member that the roster does not: on the roster as source `mailman`,
    approved by nobody, its ccTLD inferred from its domain or left empty ('' = to be placed)."""
    member = _put(
        store,
        address=address,
        cctld=infer_cctld(address) or "",
        name=name,
        source=Source.MAILMAN,
        since=now,
        approved_by="",
        request_id=None,
    )
    store.audit("member-found-in-mailman", at=now, address=member.address, cctld=member.cctld)
    return member


def found_in_mailman(store: Store, addresses: Sequence[str]) -> tuple[list[Member], list[str]]:
    """Compare Mailman's member list with the roster: (members gone from Mailman, addresses Mailman has that
    the roster does not). The caller decides what to do with each; nothing is written here."""
    keys = {address_key(a): a for a in addresses}
    gone = [m for m in members(store, include_removed=False) if address_key(m.address) not in keys]
    unknown = [a for k, a in keys.items() if on_list(store, a) is None]
    return gone, unknown
