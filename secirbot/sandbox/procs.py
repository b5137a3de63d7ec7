"""Processes of the local servers, read from /proc: which are alive in a process group, and their memory.

`killpg(pgid, 0)` also succeeds for zombies, and PID 1 in a container may never reap the orphans of a dead
master, so liveness is read from /proc where it exists.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; the fields after the last ')' do not.
    return stat[stat.rfind(")") + 2 :].split()


def group_pids(pgid: int) -> list[int]:
    """PIDs of the live (non-zombie) processes in a process group."""
    if not (PROC / "self" / "stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    pids = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        if fields and len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def pid_alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and bool(fields) and fields[0] != "Z"


def _status_kib(pid: int, name: str, file: str = "status") -> int:
    try:
        for line in (PROC / str(pid) / file).read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_bytes(pid: int) -> int:
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM)."""
    return _status_kib(pid, "VmHWM") * 1024


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages divided among their users (0 where /proc has no rollup)."""
    return _status_kib(pid, "Pss", "smaps_rollup") * 1024
