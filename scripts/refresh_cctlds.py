#!/usr/bin/env python3
"""Rebuild secirbot/data/cctlds.txt, the list of ccTLDs, from IANA's published sources.

Which TLDs are ccTLDs is IANA's "Type" column on the Root Zone Database page
(https://www.iana.org/domains/root/db): 'country-code' for the two-letter ccTLDs *and* for the IDN ccTLDs
(.рф, .中国 ...), 'generic' for generic TLDs including the generic IDNs (.онлайн ...). Neither the TLD list
nor the RDAP bootstrap carries that type, and an IDN's script says nothing about it, so the page is the
source. Which of them are delegated is the TLD list (https://data.iana.org/TLD/tlds-alpha-by-domain.txt,
the TLDs in the root zone): a country-code row missing from it is 'Not assigned' on the page (EH, BL,
BQ, MF, UM...). A few codes that IANA retired are marked 'retired' so `lookup` can say so (RETIRED below;
YU, ZR and CS no longer appear on the page at all).

Usage (sources are files or http(s) URLs; defaults are IANA's URLs):
    python scripts/refresh_cctlds.py [--root-db SRC] [--tlds SRC] [--whois-dir DIR] [--output FILE | --check]
Offline, against the archived copies:
    python scripts/refresh_cctlds.py --root-db ../shared/iana/root-db-html-2026/_db.html \
        --tlds ../shared/iana/lists/tlds-alpha-by-domain.txt --whois-dir ../shared/iana/whois --check
--whois-dir cross-checks each delegated ccTLD against its whois record (domain / domain-ace).
--check compares with the committed file and exits 1 if they differ. The output depends only on the
inputs (no timestamps), so a rebuild from the same sources reproduces the file byte for byte.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

import idna

ROOT_DB_URL = "https://www.iana.org/domains/root/db"
TLDS_URL = "https://data.iana.org/TLD/tlds-alpha-by-domain.txt"
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "secirbot" / "data" / "cctlds.txt"

# ccTLDs IANA has removed. AN and TP still show as 'Not assigned' on the root db page; YU, ZR, CS are gone
# from it. Kept so `secirbot lookup yu` says "retired" instead of "not a ccTLD".
RETIRED = {
    "an": "Netherlands Antilles, retired 2015",
    "cs": "Czechoslovakia, retired 1995",
    "tp": "East Timor (now .tl), retired 2015",
    "yu": "Yugoslavia, retired 2010",
    "zr": "Zaire (now .cd), retired 2001",
}

_ROW = re.compile(r"<tr>(.*?)</tr>", re.S)
_HREF = re.compile(r'href="/domains/root/db/([a-z0-9-]+)\.html"[^>]*>(.*?)</a>', re.S)
_CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)
_TAGS = re.compile(r"<[^>]+>")
_BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def read_source(src: str) -> str:
    if src.startswith(("http://", "https://")):
        import requests  # only when fetching

        response = requests.get(src, timeout=60, headers={"User-Agent": "secirbot refresh_cctlds"})
        response.raise_for_status()
        response.encoding = "utf-8"
        return response.text
    return Path(src).read_text(encoding="utf-8")


def parse_root_db(text: str) -> dict[str, tuple[str, str, str]]:
    """A-label -> (shown name, type, manager) for every row of the Root Zone Database page."""
    rows: dict[str, tuple[str, str, str]] = {}
    for row in _ROW.findall(text):
        link = _HREF.search(row)
        if not link:
            continue
        cells = [html.unescape(_TAGS.sub("", cell)).strip() for cell in _CELL.findall(row)]
        if len(cells) < 3:
            raise SystemExit(f"root db: unexpected row for {link.group(1)}: {cells}")
        shown = _BIDI.sub("", html.unescape(_TAGS.sub("", link.group(2)))).strip().lstrip(".")
        rows[link.group(1)] = (shown, cells[1], cells[2])
    return rows


def parse_tld_list(text: str) -> tuple[str, set[str]]:
    """(version line, set of lower-case A-labels) from tlds-alpha-by-domain.txt."""
    lines = text.splitlines()
    version = lines[0].lstrip("# ").strip() if lines and lines[0].startswith("#") else "unknown version"
    return version, {line.strip().lower() for line in lines if line.strip() and not line.startswith("#")}


def build(root_db: dict[str, tuple[str, str, str]], delegated: set[str]) -> list[tuple[str, str, str]]:
    entries = []
    for alabel, (shown, kind, manager) in sorted(root_db.items()):
        if kind != "country-code":
            continue
        ulabel = idna.decode(alabel) if alabel.startswith("xn--") else alabel
        if shown.lower() != ulabel:
            raise SystemExit(f"{alabel}: the page shows {shown!r} but the A-label decodes to {ulabel!r}")
        if alabel in RETIRED:
            status = "retired"
        elif alabel in delegated:
            status = "delegated"
        else:
            if manager != "Not assigned":
                raise SystemExit(f"{alabel}: not in the TLD list but its manager is {manager!r}: check by hand")
            status = "not-assigned"
        entries.append((alabel, ulabel, status))
    for alabel in sorted(set(RETIRED) - set(root_db)):
        entries.append((alabel, alabel, "retired"))
    for alabel, _, status in entries:
        if status == "delegated" and not (len(alabel) == 2 or alabel.startswith("xn--")):
            raise SystemExit(f"{alabel}: a country-code TLD that is neither two letters nor an IDN")
    # Two-letter ASCII TLDs are ccTLDs by definition (RFC 1591); the page must agree.
    stray = sorted(t for t in delegated if len(t) == 2 and t not in {e[0] for e in entries})
    if stray:
        raise SystemExit(f"two-letter TLDs in the root that the page does not call country-code: {stray}")
    return sorted(entries)


def cross_check_whois(entries: list[tuple[str, str, str]], whois_dir: Path) -> list[str]:
    """Each delegated ccTLD's whois record must name it (domain / domain-ace); returns problems."""
    problems = []
    for alabel, ulabel, status in entries:
        if status != "delegated":
            continue
        path = whois_dir / f"whois-{alabel}.txt"
        if not path.exists():
            problems.append(f"{alabel}: no {path.name}")
            continue
        fields = dict(re.findall(r"^(domain|domain-ace):\s*(.*?)\s*$", path.read_text(encoding="utf-8-sig"), re.M))
        if fields.get("domain", "").lower() != ulabel or fields.get("domain-ace", alabel).lower() != alabel:
            problems.append(
                f"{alabel}: whois says domain={fields.get('domain')!r} domain-ace={fields.get('domain-ace')!r}"
            )
    return problems


def render(entries: list[tuple[str, str, str]], tlds_version: str) -> str:
    counts = {s: sum(1 for e in entries if e[2] == s) for s in ("delegated", "not-assigned", "retired")}
    idn = sum(1 for e in entries if e[2] == "delegated" and e[0].startswith("xn--"))
    head = [
        "# ccTLDs known to secirbot: A-label<TAB>U-label<TAB>status (delegated | not-assigned | retired).",
        "# Only 'delegated' ones can have approvers; the others exist so `lookup` can say why not.",
        "# Built by scripts/refresh_cctlds.py from IANA's Root Zone Database page",
        f"# ({ROOT_DB_URL}, Type = country-code) and the TLD list",
        f"# ({TLDS_URL}, {tlds_version}).",
        "# Refresh: python scripts/refresh_cctlds.py   (fetches both; --help for offline use and --check).",
        f"# {counts['delegated']} delegated ({counts['delegated'] - idn} two-letter, {idn} IDN), "
        f"{counts['not-assigned']} not assigned, {counts['retired']} retired.",
    ]
    return "\n".join(head + ["\t".join(e) for e in entries]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root-db", default=ROOT_DB_URL, help="Root Zone Database page (file or URL)")
    parser.add_argument("--tlds", default=TLDS_URL, help="tlds-alpha-by-domain.txt (file or URL)")
    parser.add_argument("--whois-dir", type=Path, help="folder of whois-<tld>.txt records to cross-check")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="compare with --output instead of writing it")
    args = parser.parse_args(argv)

    version, delegated = parse_tld_list(read_source(args.tlds))
    entries = build(parse_root_db(read_source(args.root_db)), delegated)
    if args.whois_dir:
        problems = cross_check_whois(entries, args.whois_dir)
        for problem in problems:
            print(f"whois cross-check: {problem}", file=sys.stderr)
        if problems:
            return 1
    text = render(entries, version)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} differs from what the sources give: run without --check", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date ({len(entries)} entries)")
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output} ({len(entries)} entries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
