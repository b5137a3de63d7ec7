#!/usr/bin/env python3
"""Compare two files of `bench/run.py --mails-out FILE`: did the same mails go out?

    python bench/compare_mails.py A B [--show N] [--lines N] [--ignore-purpose]

The files hold one normalised record per mail the sink captured in the timed backlog run (see bench/mails.py:
dates, Message-IDs, reply tokens and MIME boundaries replaced, every other byte kept), sorted. Lines starting
with '#' (mix, seed, checkout, the run's start) are printed, not compared. Prints "identical" and exits 0 when
both hold the same records; otherwise the counts (mails, by purpose, only in A, only in B) and, for the first
N records only in A, a unified diff against the most similar record only in B (same purpose and recipients
first), each cut at a bounded number of lines; exits 1. `--ignore-purpose` compares without the purpose line
(the purpose comes from the bot's store, not from the mail: use it when a commit renamed purposes).

Standard library only, so it runs with any Python 3.11.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections import Counter
from pathlib import Path

RECORD = "=== mail"


def read(path: Path, ignore_purpose: bool = False) -> tuple[list[str], list[str]]:
    """('#' header lines, records): each record the text from its '=== mail' line to the next one."""
    header: list[str] = []
    records: list[list[str]] = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not records and line.startswith("#"):
            header.append(line)
        elif line == RECORD:
            records.append([line])
        elif records:
            records[-1].append(line)
        elif line.strip():
            raise SystemExit(f"compare_mails: {path} is not a --mails-out file (line {line[:60]!r})")
    while records and records[-1] and records[-1][-1] == "":
        records[-1].pop()
    out = []
    for lines in records:
        if ignore_purpose:
            lines = [x for x in lines if not x.startswith("purpose: ")]
        out.append("\n".join(lines))
    return header, sorted(out)


def field(record: str, name: str) -> str:
    for line in record.split("\n")[1:4]:
        if line.startswith(name + ": "):
            return line[len(name) + 2 :]
    return "(none)"


def closest(record: str, candidates: list[str]) -> str | None:
    """The candidate most like `record`: same purpose and recipients if any has them, then by similarity."""
    if not candidates:
        return None
    key = (field(record, "purpose"), field(record, "recipients"))
    same = [c for c in candidates if (field(c, "purpose"), field(c, "recipients")) == key]
    same = same or [c for c in candidates if field(c, "purpose") == key[0]] or candidates
    if len(same) > 200:  # keep it quick on big differences: the first ones in sort order
        same = same[:200]
    return max(same, key=lambda c: difflib.SequenceMatcher(None, record, c, autojunk=False).quick_ratio())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python bench/compare_mails.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("a", type=Path, metavar="A")
    parser.add_argument("b", type=Path, metavar="B")
    parser.add_argument("--show", type=int, default=3, metavar="N", help="differing records to show (default 3)")
    parser.add_argument("--lines", type=int, default=60, metavar="N", help="diff lines per record (default 60)")
    parser.add_argument("--ignore-purpose", action="store_true", help="do not compare the purpose lines")
    args = parser.parse_args(argv)
    head_a, a = read(args.a, args.ignore_purpose)
    head_b, b = read(args.b, args.ignore_purpose)
    for name, head in (("A", head_a), ("B", head_b)):
        print(f"{name}: {getattr(args, name.lower())}")
        for line in head:
            print(f"   {line}")
    if a == b:
        print(f"identical: {len(a)} mails, the same in both")
        return 0

    count_a, count_b = Counter(a), Counter(b)
    only_a = sorted((count_a - count_b).elements())
    only_b = sorted((count_b - count_a).elements())
    print(f"DIFFERENT: A {len(a)} mails, B {len(b)} mails; {len(only_a)} only in A, {len(only_b)} only in B")
    purposes_a, purposes_b = Counter(field(r, "purpose") for r in a), Counter(field(r, "purpose") for r in b)
    changed = sorted(p for p in purposes_a.keys() | purposes_b.keys() if purposes_a[p] != purposes_b[p])
    if changed:
        print("mails by purpose (A -> B): " + ", ".join(f"{p} {purposes_a[p]} -> {purposes_b[p]}" for p in changed))
    by_purpose_a = Counter(field(r, "purpose") for r in only_a)
    by_purpose_b = Counter(field(r, "purpose") for r in only_b)
    if by_purpose_a or by_purpose_b:
        print(
            "differing mails by purpose (only in A / only in B): "
            + ", ".join(
                f"{p} {by_purpose_a[p]}/{by_purpose_b[p]}" for p in sorted(by_purpose_a.keys() | by_purpose_b.keys())
            )
        )
    left = list(only_b)
    for number, record in enumerate(only_a[: args.show], 1):
        other = closest(record, left)
        print(
            f"\n--- difference {number} of {len(only_a)}: {field(record, 'purpose')} to {field(record, 'recipients')}"
        )
        if other is None:
            print("(no record only in B left to compare it with) A has:")
            print("\n".join(record.split("\n")[: args.lines]))
            continue
        left.remove(other)
        diff = list(difflib.unified_diff(record.split("\n"), other.split("\n"), "A", "B", lineterm="", n=2))
        print("\n".join(diff[: args.lines]))
        if len(diff) > args.lines:
            print(f"... ({len(diff) - args.lines} more diff lines)")
    if not only_a and only_b:
        for number, record in enumerate(only_b[: args.show], 1):
            print(f"\n--- only in B, {number} of {len(only_b)}:")
            print("\n".join(record.split("\n")[: args.lines]))
    return 1


if __name__ == "__main__":
    sys.exit(main())
