"""`secirbot lookup`: show who IANA lists for a ccTLD, or refresh every ccTLD (`--all`).

Owns the command's output (text and `--json`) and its exit statuses: 0 = resolved, 3 = not a ccTLD
(including a country code that is not delegated or retired), 4 = cannot resolve now (IANA gave no
usable answer: retry later, tell the Secretariat if it persists), 2 = wrong usage.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from secirbot.config import Config
from secirbot.iana.names import NotACcTLD, NotDelegated, TldName, all_cctlds, normalize_tld
from secirbot.iana.record import ROLES, UNUSABLE_KINDS
from secirbot.iana.resolver import MIN_INTERVAL, IanaResolver, Resolution
from secirbot.store import Store, iso

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_NOT_CCTLD = 3
EXIT_CANNOT_RESOLVE = 4


def lookup_command(
    config: Config,
    store: Store,
    names: list[str],
    all_: bool,
    as_json: bool,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    *,
    sleep: Callable[[float], None] = time.sleep,
    resolver: IanaResolver | None = None,
    universe: Sequence[TldName] | None = None,
) -> int:
    """Run `secirbot lookup NAME... [--json]` or `secirbot lookup --all [--json]`; returns the exit status.

    `sleep` paces `--all` (tests pass a no-op); `universe` replaces the packaged ccTLD list for `--all`.
    """
    resolver = resolver or IanaResolver(config, store, sleep=sleep)
    if all_ and names:
        print("secirbot lookup: give ccTLD names or --all, not both", file=err)
        return EXIT_USAGE
    if all_:
        return _lookup_all(resolver, list(universe if universe is not None else all_cctlds()), as_json, out, err)
    if not names:
        print("secirbot lookup: give at least one ccTLD (e.g. nl, .рф, xn--p1ai) or --all", file=err)
        return EXIT_USAGE
    status = EXIT_OK
    for index, text in enumerate(names):
        try:
            name = normalize_tld(text)
        except NotACcTLD as exc:
            _show_not_cctld(text, exc, as_json, out, err)
            status = max(status, EXIT_NOT_CCTLD)
            continue
        result = resolver.resolve(name, fresh=True)
        if as_json:
            print(json.dumps(resolution_json(result), ensure_ascii=False), file=out)
        elif result.ok:
            if index:
                print(file=out)
            out.write(format_record(result))
        if not result.ok:
            print(f"secirbot lookup: {cannot_resolve_message(result)}", file=err)
            status = max(status, EXIT_CANNOT_RESOLVE)
    return status


def _lookup_all(resolver: IanaResolver, names: list[TldName], as_json: bool, out: TextIO, err: TextIO) -> int:
    progress = Progress(len(names), err)
    failed: list[Resolution] = []
    for result in resolver.resolve_each(names, interval=MIN_INTERVAL):
        if as_json:
            print(json.dumps(resolution_json(result), ensure_ascii=False), file=out)
        if not result.ok:
            failed.append(result)
        progress.step(result.tld.display(), result.ok)
    progress.done()
    print(f"{len(names)} ccTLDs: {len(names) - len(failed)} resolved, {len(failed)} failed", file=err)
    for result in failed:
        assert result.problem is not None
        print(f"  {result.tld.display()}: {result.problem.summary} [snapshot {result.snapshot_id}]", file=err)
    return EXIT_CANNOT_RESOLVE if failed else EXIT_OK


class Progress:
    """A one-line bar on a terminal; one line per item elsewhere (logs, tests). No dependency on tqdm."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO):
        self.total = total
        self.count = 0
        self.failed = 0
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())

    def step(self, label: str, ok: bool) -> None:
        self.count += 1
        self.failed += 0 if ok else 1
        if self.tty:
            filled = self.WIDTH * self.count // max(self.total, 1)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            self.stream.write(f"\r[{bar}] {self.count}/{self.total} failed {self.failed} {label:<24}")
        else:
            self.stream.write(f"[{self.count}/{self.total}] {label} {'ok' if ok else 'FAILED'}\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")


# --- output -----------------------------------------------------------------------------------------


def resolution_json(result: Resolution) -> dict[str, Any]:
    """The `--json` object for one resolution (a record, or `error: cannot-resolve` with the reason)."""
    base: dict[str, Any] = {"tld": result.tld.ascii, "tld_unicode": result.tld.unicode}
    if result.record is None:
        assert result.problem is not None
        return base | {
            "error": "cannot-resolve",
            "kind": result.problem.kind,
            "message": cannot_resolve_message(result),
            "source": result.source,
            "fetched_at": iso(result.fetched_at),
            "snapshot_id": result.snapshot_id,
            "delegated": result.delegated,
        }
    record = result.record
    return base | {
        "organisation": record.organisation,
        "contacts": [
            {"role": c.role, "name": c.name, "organisation": c.organisation, "email": c.email} for c in record.contacts
        ],
        "approvers": [{"email": a.email, "name": a.name, "roles": list(a.roles)} for a in record.approvers(ROLES)],
        "source": record.source,
        "fetched_at": iso(record.fetched_at),
        "snapshot_id": result.snapshot_id,
        "delegated": record.delegated,
        "cached": result.cached,
    }


def format_record(result: Resolution) -> str:
    record = result.record
    assert record is not None
    lines = [f"ccTLD:          {record.tld.display()}", f"Manager:        {record.organisation or '(none given)'}"]
    for contact in record.contacts:
        who = ", ".join(part for part in (contact.name, contact.organisation) if part)
        lines.append(f"{contact.role.capitalize() + ':':<16}{who} <{contact.email}>")
    approvers = record.approvers(ROLES)
    lines.append(
        f"Approvers:      {len(approvers)}: " + ", ".join(f"{a.email} ({'+'.join(a.roles)})" for a in approvers)
    )
    lines.append(
        f"Source:         IANA {record.source}, fetched {iso(record.fetched_at)}"
        f" (snapshot {result.snapshot_id}{', cached' if result.cached else ''})"
    )
    lines.append(
        "Root NS:        "
        + {
            True: "delegated",
            False: "NOT delegated in the root zone: check before relying on it",
            None: "not checked (DNS unavailable or disabled)",
        }[record.delegated]
    )
    return "\n".join(lines) + "\n"


def cannot_resolve_message(result: Resolution) -> str:
    attempts = "; ".join(
        f"{a.source}: {UNUSABLE_KINDS[a.problem.kind]} ({a.problem.detail})" for a in result.attempts if a.problem
    )
    return (
        f"cannot resolve {result.tld.display()} now: {attempts or result.problem}. "
        "Retry later; tell the Secretariat if it persists."
    )


def _show_not_cctld(text: str, exc: NotACcTLD, as_json: bool, out: TextIO, err: TextIO) -> None:
    kind = "not-delegated" if isinstance(exc, NotDelegated) else "not-a-cctld"
    if as_json:
        obj: dict[str, Any] = {"input": text, "error": kind, "message": str(exc)}
        if isinstance(exc, NotDelegated):
            obj |= {"tld": exc.name.ascii, "tld_unicode": exc.name.unicode, "status": exc.status}
        print(json.dumps(obj, ensure_ascii=False), file=out)
    print(f"secirbot lookup: {exc}", file=err)
