"""The ledger: the one owner of a request's rows, the tables `requests`, `approvers`, `tokens` and
`requester_tokens`.

Every other module asks it: typed rows (frozen dataclasses with state enums) out, named writes in. It knows no
rule and sends nothing: the writes join the caller's transaction (`Store.transaction`), with the audit record
and the outbox rows of the same change (`workflow.apply`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

from .message import address_key
from .store import Store, iso, rowid


class RequestState(StrEnum):
    RESOLVING = "resolving"  # waiting for IANA's first answer
    PENDING = "pending"  # approvers asked
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


class ApproverState(StrEnum):
    ASKED = "asked"
    BOUNCED = "bounced"
    AWAY = "away"
    NOT_MINE = "not-mine"  # answered that the request is not theirs to judge
    USED = "used"  # their answer decided
    CLOSED = "closed"  # the request was decided, expired or withdrawn, or IANA no longer lists them


OPEN_STATES = (RequestState.RESOLVING, RequestState.PENDING)
DECIDED_STATES = (RequestState.APPROVED, RequestState.DENIED)
# Who may still decide. Not "not-mine": that contact answered that the request is not theirs to judge.
LIVE_APPROVER_STATES = (ApproverState.ASKED, ApproverState.BOUNCED, ApproverState.AWAY)


@dataclass(frozen=True, slots=True)
class Request:
    """One row of `requests`. Moments are the stored ISO strings (`store.iso`)."""

    id: int
    cctld: str  # lower-case A-label
    requester: str
    requester_key: str
    requester_name: str | None
    claim: str | None  # the requester's own, unverified words
    state: RequestState
    created_at: str
    updated_at: str
    expires_at: str
    source_message: int | None
    snapshot_id: int | None
    decision: str | None
    decided_by: str | None
    decided_at: str | None
    decided_via: str | None
    decision_reason: str | None
    mailman_status: str | None
    lookup_attempts: int
    next_lookup_at: str | None
    escalation_stage: int
    next_escalation_at: str | None
    replacing: str | None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def as_dict(self) -> dict[str, Any]:
        """The row as plain values (states as their strings), for JSON and templates."""
        out = asdict(self)
        out["state"] = str(self.state)
        return out


@dataclass(frozen=True, slots=True)
class Approver:
    """One row of `approvers`: an IANA contact asked to decide one request."""

    id: int
    request_id: int
    email: str  # as IANA lists it; mail goes here
    email_key: str
    roles: str  # comma-separated IANA roles
    name: str | None
    state: ApproverState
    asked_at: str
    expires_at: str
    used_at: str | None
    reminders_sent: int
    next_reminder_at: str | None

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_APPROVER_STATES

    @property
    def role_list(self) -> list[str]:
        return self.roles.split(",")

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = str(self.state)
        return out


_REQUEST_COLUMNS = frozenset(f.name for f in fields(Request)) - {"id"}
_APPROVER_COLUMNS = frozenset(f.name for f in fields(Approver)) - {"id", "request_id"}


def _request(row: sqlite3.Row) -> Request:
    values = dict(row)
    values["state"] = RequestState(values["state"])
    return Request(**{f.name: values[f.name] for f in fields(Request)})


def _approver(row: sqlite3.Row) -> Approver:
    values = dict(row)
    values["state"] = ApproverState(values["state"])
    return Approver(**{f.name: values[f.name] for f in fields(Approver)})


_LIVE = tuple(str(s) for s in LIVE_APPROVER_STATES)
_LIVE_MARKS = ",".join("?" * len(_LIVE))


class UnknownRequest(KeyError):
    """No request has this id."""


class Ledger:
    """Reads and writes of the request tables on one store; writes belong in the caller's transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- requests: reads ---------------------------------------------------------------------------

    def request(self, request_id: int) -> Request:
        row = self.store.one("SELECT * FROM requests WHERE id = ?", (request_id,))
        if row is None:
            raise UnknownRequest(request_id)
        return _request(row)

    def find_request(self, request_id: int) -> Request | None:
        row = self.store.one("SELECT * FROM requests WHERE id = ?", (request_id,))
        return _request(row) if row is not None else None

    def requests(self, *, states: Iterable[RequestState] = (), cctld: str | None = None) -> list[Request]:
        """Requests in these states (all when none given), of one ccTLD or all, oldest first."""
        where, params = self._where(states, cctld)
        return [_request(r) for r in self.store.all(f"SELECT * FROM requests{where} ORDER BY id", params)]

    def newest_request_id(self) -> int:
        return self.store.count("SELECT COALESCE(MAX(id), 0) FROM requests")

    def first_request_after(self, request_id: int) -> Request | None:
        row = self.store.one("SELECT * FROM requests WHERE id > ? ORDER BY id LIMIT 1", (request_id,))
        return _request(row) if row is not None else None

    def due_for_expiry(self, now: datetime) -> list[Request]:
        return [
            _request(r)
            for r in self.store.all(
                "SELECT * FROM requests WHERE state IN ('resolving', 'pending') AND expires_at <= ?", (iso(now),)
            )
        ]

    def due_for_lookup(self, now: datetime) -> list[Request]:
        return [
            _request(r)
            for r in self.store.all(
                "SELECT * FROM requests WHERE state = 'resolving' AND next_lookup_at <= ? ORDER BY id", (iso(now),)
            )
        ]

    def due_for_escalation(self, now: datetime) -> list[Request]:
        return [
            _request(r)
            for r in self.store.all(
                "SELECT * FROM requests WHERE state = 'pending' AND next_escalation_at <= ?", (iso(now),)
            )
        ]

    def open_of_requester(self, requester: str) -> list[tuple[int, str]]:
        """(id, ccTLD) of the requester's open requests."""
        return [
            (r["id"], r["cctld"])
            for r in self.store.all(
                "SELECT id, cctld FROM requests WHERE requester_key = ? AND state IN ('resolving', 'pending')"
                " ORDER BY id",
                (address_key(requester),),
            )
        ]

    def open_count(self, cctld: str) -> int:
        return self.store.count(
            "SELECT COUNT(*) FROM requests WHERE cctld = ? AND state IN ('resolving', 'pending')", (cctld,)
        )

    def opened_since(self, since: str, cctld: str | None = None) -> int:
        """How many requests were opened since this ISO moment (of one ccTLD, or all)."""
        if cctld is None:
            return self.store.count("SELECT COUNT(*) FROM requests WHERE created_at >= ?", (since,))
        return self.store.count("SELECT COUNT(*) FROM requests WHERE cctld = ? AND created_at >= ?", (cctld, since))

    def decided_since(self, since: str) -> int:
        return self.store.count("SELECT COUNT(*) FROM requests WHERE decided_at >= ?", (since,))

    def latest_approved(self, requester_key: str) -> int | None:
        """The id of the newest approved request of this address."""
        row = self.store.one(
            "SELECT id FROM requests WHERE requester_key = ? AND state = 'approved' ORDER BY id DESC LIMIT 1",
            (requester_key,),
        )
        return int(row["id"]) if row is not None else None

    def approved_by_mail(self, cctld: str) -> list[Request]:
        """The ccTLD's requests approved by a contact's reply (not the Secretariat's command), oldest first."""
        return [
            _request(r)
            for r in self.store.all(
                "SELECT * FROM requests WHERE cctld = ? AND state = 'approved' AND decided_via = 'mail' ORDER BY id",
                (cctld,),
            )
        ]

    def cctlds_in_use(self) -> list[str]:
        """The ccTLDs with a pending or approved request: whose IANA contacts matter today."""
        return [
            r["cctld"]
            for r in self.store.all(
                "SELECT DISTINCT cctld FROM requests WHERE state IN ('pending', 'approved') ORDER BY cctld"
            )
        ]

    def counts_by_cctld(self) -> list[tuple[str, RequestState, int]]:
        return [
            (r["cctld"], RequestState(r["state"]), int(r["n"]))
            for r in self.store.all("SELECT cctld, state, COUNT(*) AS n FROM requests GROUP BY cctld, state")
        ]

    def set_mailman_status(self, request_id: int, status: str, *, now: datetime, only_from: Sequence[str] = ()) -> None:
        """Record what Mailman said of the request's subscription; with `only_from`, only over those states
        (Mailman's later mail never overwrites a final answer)."""
        if not only_from:
            self.update(request_id, {"mailman_status": status}, now=now)
            return
        marks = ",".join("?" * len(only_from))
        self.store.execute(
            f"UPDATE requests SET mailman_status = ?, updated_at = ? WHERE id = ? AND mailman_status IN ({marks})",
            (status, iso(now), request_id, *only_from),
        )

    def mailman_status(self, request_id: int) -> str | None:
        row = self.store.one("SELECT mailman_status FROM requests WHERE id = ?", (request_id,))
        return row["mailman_status"] if row is not None else None

    def _where(self, states: Iterable[RequestState], cctld: str | None) -> tuple[str, tuple[Any, ...]]:
        clauses, params = [], []
        wanted = [str(s) for s in states]
        if wanted:
            clauses.append(f"state IN ({','.join('?' * len(wanted))})")
            params += wanted
        if cctld is not None:
            clauses.append("cctld = ?")
            params.append(cctld)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)

    # --- requests: writes --------------------------------------------------------------------------

    def open(
        self,
        *,
        cctld: str,
        requester: str,
        requester_name: str | None,
        claim: str | None,
        now: datetime,
        expires_at: datetime,
        source_message: int | None,
        replacing: str | None,
    ) -> int:
        """A new request, resolving, its first IANA lookup due at once. Returns its id."""
        cur = self.store.execute(
            "INSERT INTO requests (cctld, requester, requester_key, requester_name, claim, state, created_at,"
            " updated_at, expires_at, source_message, snapshot_id, lookup_attempts, next_lookup_at, replacing)"
            " VALUES (?, ?, ?, ?, ?, 'resolving', ?, ?, ?, ?, NULL, 0, ?, ?)",
            (
                cctld,
                requester,
                address_key(requester),
                requester_name,
                claim,
                iso(now),
                iso(now),
                iso(expires_at),
                source_message,
                iso(now),
                replacing,
            ),
        )
        return rowid(cur)

    def update(self, request_id: int, changes: Mapping[str, Any], *, now: datetime) -> None:
        """Set these columns of a request (and updated_at). Unknown column names are a programming error."""
        unknown = set(changes) - _REQUEST_COLUMNS
        if unknown:
            raise ValueError(f"not columns of requests: {sorted(unknown)}")
        values = {k: (str(v) if isinstance(v, StrEnum) else v) for k, v in changes.items()}
        values["updated_at"] = iso(now)
        names = ", ".join(f"{k} = ?" for k in values)
        self.store.execute(f"UPDATE requests SET {names} WHERE id = ?", (*values.values(), request_id))

    # --- approvers ---------------------------------------------------------------------------------

    def approver(self, approver_id: int) -> Approver | None:
        row = self.store.one("SELECT * FROM approvers WHERE id = ?", (approver_id,))
        return _approver(row) if row is not None else None

    def approvers(self, request_id: int) -> list[Approver]:
        return [
            _approver(r)
            for r in self.store.all("SELECT * FROM approvers WHERE request_id = ? ORDER BY id", (request_id,))
        ]

    def live_approvers(self, request_id: int) -> list[Approver]:
        return [
            _approver(r)
            for r in self.store.all(
                f"SELECT * FROM approvers WHERE request_id = ? AND state IN ({_LIVE_MARKS}) ORDER BY id",
                (request_id, *_LIVE),
            )
        ]

    def approver_at(self, request_id: int, address: str) -> Approver | None:
        row = self.store.one(
            "SELECT * FROM approvers WHERE request_id = ? AND email_key = ?", (request_id, address_key(address))
        )
        return _approver(row) if row is not None else None

    def bounced_since(self, address: str, since: str) -> bool:
        """Whether this address bounced an approval request asked since this ISO moment."""
        return (
            self.store.one(
                "SELECT 1 FROM approvers WHERE email_key = ? AND state = 'bounced' AND asked_at >= ? LIMIT 1",
                (address_key(address), since),
            )
            is not None
        )

    def asked_on_pending(self, address: str) -> list[Approver]:
        """This address's rows still waiting for its answer on pending requests (a bounce or an auto-reply
        from it concerns them)."""
        return [
            _approver(r)
            for r in self.store.all(
                "SELECT a.* FROM approvers a JOIN requests r ON r.id = a.request_id"
                " WHERE a.email_key = ? AND a.state = 'asked' AND r.state = 'pending'",
                (address_key(address),),
            )
        ]

    def due_for_reminder(self, now: datetime) -> list[Approver]:
        return [
            _approver(r)
            for r in self.store.all(
                "SELECT a.* FROM approvers a JOIN requests r ON r.id = a.request_id"
                " WHERE r.state = 'pending' AND a.state = 'asked' AND a.next_reminder_at <= ?",
                (iso(now),),
            )
        ]

    def add_approver(
        self,
        request_id: int,
        *,
        email: str,
        roles: Sequence[str],
        name: str,
        asked_at: datetime,
        expires_at: str,
        next_reminder_at: datetime | None,
    ) -> int:
        cur = self.store.execute(
            "INSERT INTO approvers (request_id, email, email_key, roles, name, state, asked_at, expires_at,"
            " next_reminder_at) VALUES (?, ?, ?, ?, ?, 'asked', ?, ?, ?)",
            (
                request_id,
                email,
                address_key(email),
                ",".join(roles),
                name,
                iso(asked_at),
                expires_at,
                iso(next_reminder_at) if next_reminder_at is not None else None,
            ),
        )
        return rowid(cur)

    def update_approver(self, approver_id: int, changes: Mapping[str, Any]) -> None:
        unknown = set(changes) - _APPROVER_COLUMNS
        if unknown:
            raise ValueError(f"not columns of approvers: {sorted(unknown)}")
        values = {k: (str(v) if isinstance(v, StrEnum) else v) for k, v in changes.items()}
        names = ", ".join(f"{k} = ?" for k in values)
        self.store.execute(f"UPDATE approvers SET {names} WHERE id = ?", (*values.values(), approver_id))

    def close_live_approvers(self, request_id: int) -> None:
        """The request is closed: no live contact is left, and no reminder is due."""
        self.store.execute(
            "UPDATE approvers SET state = 'closed', next_reminder_at = NULL"
            f" WHERE request_id = ? AND state IN ({_LIVE_MARKS})",
            (request_id, *_LIVE),
        )

    # --- tokens ------------------------------------------------------------------------------------

    def add_token(self, token_hash: str, approver_id: int, now: datetime) -> None:
        self.store.execute(
            "INSERT INTO tokens (token_hash, approver_id, issued_at) VALUES (?, ?, ?)",
            (token_hash, approver_id, iso(now)),
        )

    def add_requester_token(self, token_hash: str, request_id: int, now: datetime) -> None:
        self.store.execute(
            "INSERT INTO requester_tokens (token_hash, request_id, issued_at) VALUES (?, ?, ?)",
            (token_hash, request_id, iso(now)),
        )

    def approver_of_token(self, token_hash: str) -> Approver | None:
        row = self.store.one(
            "SELECT a.* FROM tokens t JOIN approvers a ON a.id = t.approver_id WHERE t.token_hash = ?", (token_hash,)
        )
        return _approver(row) if row is not None else None

    def request_of_requester_token(self, token_hash: str) -> Request | None:
        row = self.store.one(
            "SELECT r.* FROM requester_tokens t JOIN requests r ON r.id = t.request_id WHERE t.token_hash = ?",
            (token_hash,),
        )
        return _request(row) if row is not None else None
