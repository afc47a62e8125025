"""CPU seconds (user + system) of whole process trees, read from /proc."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    """The fields of one `/proc/<pid>/stat` line that the CPU accounting needs."""

    pid: int
    ppid: int
    ticks: int  # utime + stime + cutime + cstime: itself and its reaped children


def parse_stat(line: str) -> ProcStat:
    """Parse a `/proc/<pid>/stat` line (the command name may hold spaces and parentheses)."""
    head, _, rest = line.rpartition(")")
    pid = int(head.split("(", 1)[0])
    fields = rest.split()  # fields[0] is the state (field 3 of proc(5))
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ProcStat(pid, ppid, utime + stime + cutime + cstime)


def _all_stats() -> list[ProcStat]:
    stats = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stats.append(parse_stat((entry / "stat").read_text()))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not readable
    return stats


def tree_ticks(stats: Iterable[ProcStat], roots: Iterable[int]) -> int:
    """Sum the ticks of the given processes and all their descendants."""
    by_parent: dict[int, list[ProcStat]] = {}
    by_pid: dict[int, ProcStat] = {}
    for stat in stats:
        by_pid[stat.pid] = stat
        by_parent.setdefault(stat.ppid, []).append(stat)
    total, seen = 0, set()
    todo = [pid for pid in roots if pid in by_pid]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += by_pid[pid].ticks
        todo.extend(child.pid for child in by_parent.get(pid, []))
    return total


def cpu_seconds(roots: Iterable[int]) -> float:
    """Return the CPU seconds used so far by these processes and their descendants."""
    return tree_ticks(_all_stats(), roots) / TICKS_PER_S
