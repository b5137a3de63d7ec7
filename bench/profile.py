"""Reading a py-spy profile: `py-spy record --idle --format raw` writes folded stacks ("f1;f2;f3 COUNT");
this prints the functions that take the most wall time, inclusive (anywhere on the stack) and self (on top).

    python bench/profile.py PROFILE.txt [--top 30]

`python bench/run.py --profile py-spy` records the timed backlog run this way (the figures of that run then
include the profiler's overhead).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>[^ ]+) \((?P<file>[^:)]+)(?::(?P<line>\d+))?\)$")


def frame_name(frame: str) -> str:
    """'compose (secirbot/compose.py:120)' -> 'compose (secirbot/compose.py)': one entry per function."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match.group('func')} ({path})"


def summarize(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    """(samples, inclusive samples per function, self samples per function) of a raw py-spy profile."""
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        n = int(count)
        total += n
        names = [frame_name(f) for f in frames if not f.startswith(("process ", "thread "))]
        for name in set(names):
            inclusive[name] += n
        if names:
            own[names[-1]] += n
    return total, inclusive, own


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    total, inclusive, own = summarize(args.profile)
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    for title, table in (("inclusive (anywhere on the stack)", inclusive), ("self (top of the stack)", own)):
        print(f"\n{title}: share of {total} samples")
        for name, n in table.most_common(args.top):
            print(f"  {100 * n / total:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `| head`
        sys.exit(0)
