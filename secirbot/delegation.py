"""Delegated answers: a person P answering with IANA contact C's token from P's own address.

Most IANA contacts are role addresses (hostmaster@, admin@) with people behind them who answer from
their own mailbox. Such an answer counts only when ALL of these hold (`conditions`, pure):
1. P's organisational domain (Public Suffix List) is that of C or of another IANA contact of the ccTLD;
2. P is authenticated, whatever `authentication.require` says: a trusted DMARC pass for P's domain or an
   aligned DKIM signature over From (authenticity.check_sender at level `dmarc`);
3. C's address is in To or Cc of the reply, so the people behind C see what was said in its name;
4. P is not the requester, and no delegated answer on this request was objected to (after an objection
   only a contact's own answer or the Secretariat decides).
A delegated APPROVE waits out `approvers.delegates.objection_window` (state `waiting`) and takes effect
then, unless a contact (or another qualifying delegate) answers OBJECT; a contact's own answer in the
window decides at once and supersedes it. A delegated DENY takes effect at once.

This module alone reads and writes the `delegations` table.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from .authenticity import SenderCheck
from .dmarc_policy import ascii_domain, organisational_domain
from .message import address_key, same_address
from .store import Store, iso, rowid


class DelegationState(StrEnum):
    WAITING = "waiting"  # a delegated APPROVE in its objection window
    EFFECTIVE = "effective"  # it decided the request
    OBJECTED = "objected"  # someone answered OBJECT in the window
    SUPERSEDED = "superseded"  # the request was decided otherwise first


@dataclass(frozen=True)
class Qualification:
    ok: bool
    why: str  # when not ok: the first condition that failed, said so the person can do it right
    rule: str  # delegate-ok | delegate-org-domain | delegate-unauthenticated | delegate-not-in-copy | ...


def org_of(address: str) -> str | None:
    domain = ascii_domain(address)
    return organisational_domain(domain) if domain else None


def conditions(
    *,
    delegate: str,
    contact: str,
    contacts: Iterable[str],
    requester: str,
    authentication: SenderCheck,
    copied: Sequence[str],
    objected_before: bool,
) -> Qualification:
    """Whether `delegate` may answer for `contact` (pure). `contacts`: every IANA contact address of the
    ccTLD; `copied`: the addresses in the reply's To and Cc; `authentication`: check_sender for the
    delegate's own address at level dmarc."""
    own_org = org_of(delegate)
    orgs = {org for org in (org_of(a) for a in [contact, *contacts]) if org}
    if own_org is None or own_org not in orgs:
        return Qualification(
            False,
            f"{delegate} is not in the organisation of {contact} or of another IANA contact of this ccTLD",
            "delegate-org-domain",
        )
    if same_address(delegate, requester):
        return Qualification(False, "the requester cannot answer for their own request", "self-approval")
    if not authentication.ok:
        return Qualification(
            False,
            f"your mail to us could not be authenticated as coming from {delegate} "
            f"({authentication.failure}); an answer on behalf of a contact must pass DMARC or carry an aligned "
            "DKIM signature",
            "delegate-unauthenticated",
        )
    if not any(same_address(a, contact) for a in copied):
        return Qualification(
            False,
            f"{contact} must be in To or Cc of an answer given on its behalf, so that the people behind it see it",
            "delegate-not-in-copy",
        )
    if objected_before:
        return Qualification(
            False,
            "an answer given on a contact's behalf was objected to for this request: only an IANA contact's own "
            "answer, or the Secretariat, decides it now",
            "delegate-after-objection",
        )
    return Qualification(True, "", "delegate-ok")


# --- the table ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delegation:
    id: int
    request_id: int
    approver_id: int
    delegate: str
    verdict: str
    state: DelegationState
    authentication: dict[str, Any]
    created_at: str
    takes_effect_at: str | None
    message_row: int | None


def _delegation(row: sqlite3.Row) -> Delegation:
    return Delegation(
        id=row["id"],
        request_id=row["request_id"],
        approver_id=row["approver_id"],
        delegate=row["delegate"],
        verdict=row["verdict"],
        state=DelegationState(row["state"]),
        authentication=json.loads(row["authentication"]),
        created_at=row["created_at"],
        takes_effect_at=row["takes_effect_at"],
        message_row=row["message_row"],
    )


def record(
    store: Store,
    *,
    request_id: int,
    approver_id: int,
    delegate: str,
    verdict: str,
    state: DelegationState,
    checks: dict[str, str],
    now: datetime,
    takes_effect_at: datetime | None,
    message_row: int | None,
) -> int:
    """Record a delegated answer; returns its id."""
    cur = store.execute(
        "INSERT INTO delegations (request_id, approver_id, delegate, delegate_key, verdict, state, authentication,"
        " created_at, takes_effect_at, message_row) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            request_id,
            approver_id,
            delegate,
            address_key(delegate),
            verdict,
            state.value,
            json.dumps(checks, sort_keys=True),
            iso(now),
            iso(takes_effect_at) if takes_effect_at else None,
            message_row,
        ),
    )
    return rowid(cur)


def waiting(store: Store, request_id: int) -> Delegation | None:
    row = store.one(
        "SELECT * FROM delegations WHERE request_id = ? AND state = 'waiting' ORDER BY id LIMIT 1", (request_id,)
    )
    return _delegation(row) if row is not None else None


def objected_before(store: Store, request_id: int) -> bool:
    return (
        store.count("SELECT COUNT(*) FROM delegations WHERE request_id = ? AND state = 'objected'", (request_id,)) > 0
    )


def due(store: Store, now: datetime) -> list[Delegation]:
    rows = store.all(
        "SELECT * FROM delegations WHERE state = 'waiting' AND takes_effect_at <= ? ORDER BY takes_effect_at",
        (iso(now),),
    )
    return [_delegation(r) for r in rows]


def end(store: Store, delegation_id: int, state: DelegationState, *, now: datetime, by: str) -> None:
    store.execute(
        "UPDATE delegations SET state = ?, ended_at = ?, ended_by = ? WHERE id = ? AND state = 'waiting'",
        (state.value, iso(now), by, delegation_id),
    )


def end_all_waiting(store: Store, request_id: int, state: DelegationState, *, now: datetime, by: str) -> int:
    cur = store.execute(
        "UPDATE delegations SET state = ?, ended_at = ?, ended_by = ? WHERE request_id = ? AND state = 'waiting'",
        (state.value, iso(now), by, request_id),
    )
    return cur.rowcount
