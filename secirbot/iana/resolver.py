"""Resolving a ccTLD to its IANA record: primary and fall-back source, snapshots, cache, one query in flight.

Owns the policy around the two sources: ask `config.iana.primary` (whois by default), ask the other one
when the primary's answer is unusable or never came, record which one answered, and write EVERY answer
(usable or not, even "no answer") to `iana_snapshots` as audit material. A validated record may be
reused for `config.iana.cache_ttl_seconds` when the caller allows it (`fresh=False`); a new request
resolves afresh. Network trouble never raises out of `resolve`: it is an `Unusable('unreachable')`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from secirbot.config import Config
from secirbot.iana.delegation import is_delegated
from secirbot.iana.names import TldName
from secirbot.iana.rdap import parse_rdap, query_rdap
from secirbot.iana.record import Approver, IanaRecord, ParsedRecord, QueryFailed, Source, Unusable
from secirbot.iana.whois import parse_whois, query_whois
from secirbot.store import Store, from_iso, iso, rowid, utcnow

MIN_INTERVAL = 1.0  # seconds between two queries in bulk: IANA asks bulk users to be polite
MAX_BACKOFF = 300.0
# Answers that say "the server is struggling", not "the record is odd": slow down after them.
BACKOFF_KINDS = frozenset({"unreachable", "error", "empty", "truncated"})


@dataclass(frozen=True)
class Attempt:
    """One source asked during a resolution, and the snapshot row that keeps its answer."""

    source: Source
    snapshot_id: int
    problem: Unusable | None


@dataclass(frozen=True)
class Resolution:
    """The outcome of one `resolve`. Exactly one of `record` / `problem` is set.

    `snapshot_id` is the row holding the answer used (the usable one, or the most telling failure);
    `attempts` lists every row written, in order. `cached` = reused a stored snapshot, `shared` = reused
    the answer of a query another thread had in flight.
    """

    tld: TldName
    snapshot_id: int
    record: IanaRecord | None
    problem: Unusable | None
    source: Source
    fetched_at: datetime
    delegated: bool | None
    attempts: tuple[Attempt, ...] = ()
    cached: bool = False
    shared: bool = False

    @property
    def ok(self) -> bool:
        return self.record is not None


@dataclass
class _Flight:
    lock: threading.Lock = field(default_factory=threading.Lock)
    completed: int = 0
    last: Resolution | None = None


_FETCHERS: dict[str, tuple[Callable[..., str], Callable[[str, TldName], ParsedRecord | Unusable]]] = {
    "whois": (query_whois, parse_whois),
    "rdap": (query_rdap, parse_rdap),
}


class IanaResolver:
    """Use one instance per process: the at-most-one-query-in-flight guarantee is per instance."""

    def __init__(
        self,
        config: Config,
        store: Store,
        now: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.config = config
        self.store = store
        self.now = now
        self.sleep = sleep  # paces `resolve_each`
        self._flights: dict[str, _Flight] = {}
        self._flights_lock = threading.Lock()

    # -- public ------------------------------------------------------------------------------------

    def resolve(self, name: TldName, fresh: bool = True) -> Resolution:
        """IANA's record for `name`, or why there is none. Always leaves a snapshot row behind.

        A caller arriving while another thread queries the same TLD waits and gets that answer
        (`shared=True`) instead of querying again.
        """
        flight = self._flight(name.ascii)
        seen = flight.completed
        with flight.lock:
            # Someone finished a query while we waited: reuse it, unless it was only a cache hit and
            # this caller needs a fresh answer.
            last = flight.last
            if flight.completed != seen and last is not None and (not fresh or not last.cached):
                return replace(last, shared=True)
            if not fresh:
                cached = self.cached(name)
                if cached is not None:
                    return cached
            result = self._resolve_now(name)
            flight.last = result
            flight.completed += 1
            return result

    def resolve_each(
        self, names: Iterable[TldName], interval: float = MIN_INTERVAL, max_backoff: float = MAX_BACKOFF
    ) -> Iterator[Resolution]:
        """Resolve many TLDs afresh, politely: `interval` seconds (>= 1) between queries, doubling after
        each resolution in which a server looked in trouble (even if the other source then answered), up
        to `max_backoff`, and back to `interval` after a clean one.
        """
        interval = max(interval, MIN_INTERVAL)
        pause = interval
        for index, name in enumerate(names):
            if index:
                self.sleep(pause)
            result = self.resolve(name)
            if any(a.problem is not None and a.problem.kind in BACKOFF_KINDS for a in result.attempts):
                pause = min(pause * 2, max_backoff)
            else:
                pause = interval
            yield result

    def cached(self, name: TldName) -> Resolution | None:
        """The newest validated snapshot younger than the TTL, or None."""
        ttl = self.config.iana.cache_ttl_seconds
        if ttl <= 0:
            return None
        oldest = iso(self.now() - timedelta(seconds=ttl))
        row = self.store.one(
            "SELECT id, source, fetched_at, raw, record, delegated FROM iana_snapshots"
            " WHERE tld = ? AND record IS NOT NULL AND fetched_at > ? ORDER BY fetched_at DESC, id DESC LIMIT 1",
            (name.ascii, oldest),
        )
        if row is None:
            return None
        record = IanaRecord.from_json(row["record"], raw=row["raw"])
        if record.tld.ascii != name.ascii:
            return None
        return Resolution(
            record.tld,
            row["id"],
            record,
            None,
            row["source"],
            from_iso(row["fetched_at"]),
            record.delegated,
            (Attempt(row["source"], row["id"], None),),
            cached=True,
        )

    # -- internals ---------------------------------------------------------------------------------

    def _flight(self, ascii_tld: str) -> _Flight:
        with self._flights_lock:
            return self._flights.setdefault(ascii_tld, _Flight())

    def _resolve_now(self, name: TldName) -> Resolution:
        primary: Source = self.config.iana.primary
        order: tuple[Source, Source] = (primary, "rdap" if primary == "whois" else "whois")
        # The DNS check runs beside the IANA queries: an unreachable resolver costs its timeout only once.
        dns_check = _Background(is_delegated, name.ascii, self.config.dns)
        attempts: list[Attempt] = []
        failures: list[tuple[Attempt, datetime]] = []
        for source in order:
            fetched_at = self.now()
            outcome, raw = self._ask(source, name)
            delegated = dns_check.result()
            if isinstance(outcome, ParsedRecord):
                record = IanaRecord.from_parsed(outcome, source, fetched_at, raw, delegated)
                snapshot_id = self._save(name, source, fetched_at, raw, record, None, delegated)
                attempts.append(Attempt(source, snapshot_id, None))
                return Resolution(name, snapshot_id, record, None, source, fetched_at, delegated, tuple(attempts))
            snapshot_id = self._save(name, source, fetched_at, raw, None, outcome, delegated)
            attempt = Attempt(source, snapshot_id, outcome)
            attempts.append(attempt)
            failures.append((attempt, fetched_at))
        # An answer IANA actually gave (error text, Not assigned...) says more than "could not connect".
        chosen, fetched_at = next(
            ((a, t) for a, t in failures if a.problem and a.problem.kind != "unreachable"), failures[0]
        )
        return Resolution(
            name, chosen.snapshot_id, None, chosen.problem, chosen.source, fetched_at, delegated, tuple(attempts)
        )

    def _ask(self, source: Source, name: TldName) -> tuple[ParsedRecord | Unusable, str]:
        query, parse = _FETCHERS[source]
        iana = self.config.iana
        try:
            if source == "whois":
                raw = query(iana.whois, name.ascii, iana.timeout_seconds)
            else:
                raw = query(iana.rdap, name.ascii, iana.timeout_seconds, iana.rdap_ca_file)
        except QueryFailed as exc:
            return exc.problem, exc.problem.raw
        except Exception as exc:  # a bug or surprise in a client library must not lose the request
            return Unusable("unreachable", f"{type(exc).__name__}: {exc}", "", source), ""
        return parse(raw, name), raw

    def _save(
        self,
        name: TldName,
        source: Source,
        fetched_at: datetime,
        raw: str,
        record: IanaRecord | None,
        problem: Unusable | None,
        delegated: bool | None,
    ) -> int:
        with self.store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO iana_snapshots (tld, source, fetched_at, raw, record, problem, delegated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    name.ascii,
                    source,
                    iso(fetched_at),
                    raw,
                    record.to_json() if record else None,
                    problem.to_json() if problem else None,
                    None if delegated is None else int(delegated),
                ),
            )
            return rowid(cur)


class _Background:
    """Run one call in a daemon thread; `result()` waits for it (None if it raised)."""

    def __init__(self, func: Callable[..., bool | None], *args: object):
        self._value: bool | None = None
        self._thread = threading.Thread(target=self._run, args=(func, *args), daemon=True)
        self._thread.start()

    def _run(self, func: Callable[..., bool | None], *args: object) -> None:
        try:
            self._value = func(*args)
        except Exception:  # the sanity signal is optional: unknown rather than a lost request
            self._value = None

    def result(self) -> bool | None:
        self._thread.join()
        return self._value


def latest_record(store: Store, tld: str) -> IanaRecord | None:
    """The newest validated record kept for this ccTLD (A-label), however old, or None: for decisions that
    must not wait for IANA (who may ask to remove a member); the daily re-check keeps it fresh."""
    row = store.one(
        "SELECT raw, record FROM iana_snapshots WHERE tld = ? AND record IS NOT NULL"
        " ORDER BY fetched_at DESC, id DESC LIMIT 1",
        (tld,),
    )
    return IanaRecord.from_json(row["record"], raw=row["raw"]) if row is not None else None


def approvers_of(store: Store, tld: str, roles: Sequence[str]) -> list[Approver]:
    """The approvers in `roles` of the newest validated record kept for this ccTLD (none if never looked up)."""
    record = latest_record(store, tld)
    return record.approvers(tuple(roles)) if record is not None else []


def load_snapshot(store: Store, snapshot_id: int) -> IanaRecord | None:
    """The validated record kept in snapshot `snapshot_id`, or None if that answer was not usable."""
    row = store.one("SELECT raw, record FROM iana_snapshots WHERE id = ?", (snapshot_id,))
    if row is None or row["record"] is None:
        return None
    return IanaRecord.from_json(row["record"], raw=row["raw"])


def load_problem(store: Store, snapshot_id: int) -> Unusable | None:
    """Why snapshot `snapshot_id` was not usable, or None if it was (or does not exist)."""
    row = store.one("SELECT source, raw, problem FROM iana_snapshots WHERE id = ?", (snapshot_id,))
    if row is None or row["problem"] is None:
        return None
    data = json.loads(row["problem"])
    return Unusable(data["kind"], data["detail"], row["raw"], row["source"])
