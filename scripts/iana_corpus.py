#!/usr/bin/env python3
"""Bulk check of the whois parser over the archived IANA answers in ../shared/iana (not a unit test).

Parses every `whois/whois-<tld>.txt` (today's records) and every file of `whois-history/<tld>/` (all
archived versions 2008-2024, including the empty, error, NEW and pre-2010 answers) with
`secirbot.iana.whois.parse_whois`, and prints how many gave a usable record and how many were rejected,
by reason. Exits 0; prints a message and exits 0 when the folder is absent.

    python scripts/iana_corpus.py [--shared ../shared/iana] [--examples 3]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from secirbot.iana.names import NotACcTLD, TldName, is_cctld, parse_tld
from secirbot.iana.record import ParsedRecord
from secirbot.iana.whois import decode_answer, parse_whois

DEFAULT_SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "iana"
FREE_MAIL = (
    "gmail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "yahoo.fr",
    "aol.com",
    "mail.ru",
    "yandex.ru",
    "live.com",
    "icloud.com",
)


def check(files: list[tuple[Path, TldName]], examples: int) -> tuple[list[ParsedRecord], list[str]]:
    parsed: list[ParsedRecord] = []
    rejected: Counter[str] = Counter()
    samples: dict[str, list[str]] = defaultdict(list)
    for path, asked in files:
        outcome = parse_whois(decode_answer(path.read_bytes()), asked)
        if isinstance(outcome, ParsedRecord):
            parsed.append(outcome)
            continue
        rejected[outcome.kind] += 1
        if len(samples[outcome.kind]) < examples:
            samples[outcome.kind].append(f"{path.parent.name}/{path.name}: {outcome.detail}")
    lines = [f"  {len(files)} files: {len(parsed)} parsed, {sum(rejected.values())} rejected"]
    for kind, count in rejected.most_common():
        lines.append(f"    rejected {kind}: {count}")
        lines.extend(f"      e.g. {sample}" for sample in samples[kind])
    return parsed, lines


def quirks(records: list[ParsedRecord]) -> list[str]:
    by_address: dict[str, set[str]] = defaultdict(set)
    same_both = mixed = free = non_ascii = multi = 0
    for record in records:
        emails = [c.email.lower() for c in record.contacts]
        for c in record.contacts:
            by_address[c.email.lower()].add(record.tld.ascii)
        roles = {c.role for c in record.contacts}
        approvers = {e for e in emails}
        same_both += len(approvers) < len(emails) and len(roles) == 2
        mixed += any(c.email != c.email.lower() for c in record.contacts)
        free += any(c.email.lower().endswith(FREE_MAIL) for c in record.contacts)
        non_ascii += any(not (c.name + c.organisation).isascii() for c in record.contacts)
        multi += len(record.contacts) > 2
    shared = sorted(((len(t), a) for a, t in by_address.items() if len(t) > 1), reverse=True)
    return [
        f"  same address for more than one contact: {same_both} ccTLDs (approvers de-duplicated)",
        f"  mixed-case addresses: {mixed} ccTLDs; free-mail approvers: {free} ccTLDs;"
        f" non-ASCII contact names: {non_ascii} ccTLDs; more than 2 contact addresses: {multi}",
        f"  addresses serving several ccTLDs: {len(shared)} of {len(by_address)}"
        + (f" (most: {shared[0][1]} on {shared[0][0]})" if shared else ""),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the ../shared/iana folder")
    parser.add_argument("--examples", type=int, default=3, help="example files shown per rejection reason")
    args = parser.parse_args(argv)
    current_dir, history_dir = args.shared / "whois", args.shared / "whois-history"
    if not current_dir.is_dir():
        print(f"{current_dir} is absent: nothing to check (skipped)")
        return 0

    current: list[tuple[Path, TldName]] = []
    not_cc: list[str] = []
    for path in sorted(current_dir.glob("whois-*.txt")):
        name = parse_tld(path.stem.removeprefix("whois-"))
        if is_cctld(name.ascii):
            current.append((path, name))
        else:
            not_cc.append(name.ascii)
    print(f"{current_dir} (today's records; {len(not_cc)} non-ccTLD files skipped: {', '.join(not_cc)})")
    records, lines = check(current, args.examples)
    print("\n".join(lines))
    print("\n".join(quirks(records)))

    if history_dir.is_dir():
        history: list[tuple[Path, TldName]] = []
        for folder in sorted(p for p in history_dir.iterdir() if p.is_dir()):
            try:
                name = parse_tld(folder.name)
            except NotACcTLD:
                continue
            history.extend((path, name) for path in sorted(folder.glob("*.txt")))
        print(f"{history_dir} (every archived version, 2008-2024)")
        _, lines = check(history, args.examples)
        print("\n".join(lines))
    else:
        print(f"{history_dir} is absent (skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
