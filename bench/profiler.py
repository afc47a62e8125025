"""Where a process's CPU goes: yappi (CPU clock, every thread), summed by package.

`profiled()` runs a block under yappi and returns its function statistics; `summarise`
turns them into a small table: the CPU share of each package (own time, so the shares
add up to 100 %), the functions with the most own time, and the service's own functions
with the most cumulative time (what a change in `reconciler/` can remove).
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yappi

# Packages reported on their own line; the rest is "other libraries".
GROUPS = {
    "reconciler": "reconciler",
    "sqlalchemy": "sqlalchemy",
    "requests": "requests+urllib3",
    "urllib3": "requests+urllib3",
    "flask": "flask+werkzeug",
    "werkzeug": "flask+werkzeug",
    "waitress": "waitress",
    "psycopg": "psycopg",
    "pydantic": "pydantic",
    "pydantic_core": "pydantic",
    "standardwebhooks": "standardwebhooks",
    "apscheduler": "apscheduler",
    "yappi": "profiler",
}
_STDLIB = sysconfig.get_paths()["stdlib"]
TOP = 12


def package(path: str) -> str:
    """Name the group a function's source file belongs to."""
    if "site-packages/" in path:
        top = path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
        return GROUPS.get(top, "other libraries")
    if "/reconciler/" in path:
        return "reconciler"
    if "/bench/" in path:
        return "bench harness"
    if path.startswith(_STDLIB) or path.startswith(sys.base_prefix) or not path.startswith("/"):
        return "stdlib"
    return "other libraries"


@contextmanager
def profiled() -> Iterator[list[Any]]:
    """Profile every thread's CPU time inside the block; the list fills with the stats."""
    stats: list[Any] = []
    yappi.clear_stats()
    yappi.set_clock_type("cpu")
    yappi.start(builtins=False, profile_threads=True)
    try:
        yield stats
    finally:
        yappi.stop()
        stats.extend(yappi.get_func_stats())
        yappi.clear_stats()


def _where(stat: Any) -> str:
    module = stat.module
    for marker in ("site-packages/", "/reconciler/", "/bench/"):
        if marker in module:
            module = marker.strip("/").replace("site-packages", "") + module.split(marker, 1)[1]
            break
    else:
        module = module.rsplit("/", 1)[-1]
    return f"{module.lstrip('/')}:{stat.lineno} {stat.name}"


def summarise(stats: list[Any], events: int) -> dict[str, Any]:
    """Sum the stats by package and pick the top functions, per event."""
    total = sum(s.tsub for s in stats) or 1e-9
    groups: dict[str, float] = {}
    for s in stats:
        name = package(s.module)
        groups[name] = groups.get(name, 0.0) + s.tsub

    def row(s: Any, seconds: float) -> dict[str, Any]:
        return {
            "package": package(s.module),
            "function": _where(s),
            "calls_per_event": round(s.ncall / events, 2),
            "own_share": round(s.tsub / total, 4),
            "cum_share": round(s.ttot / total, 4),
            "ms_per_event": round(seconds / events * 1000, 3),
        }

    by_own = sorted(stats, key=lambda s: s.tsub, reverse=True)[:TOP]
    ours = [s for s in stats if package(s.module) == "reconciler"]
    by_cum = sorted(ours, key=lambda s: s.ttot, reverse=True)[:TOP]
    return {
        "events": events,
        "profiled_cpu_s": round(total, 3),
        "packages": {
            k: round(v / total, 4) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])
        },
        "top_own": [row(s, s.tsub) for s in by_own],
        "top_cumulative_reconciler": [row(s, s.ttot) for s in by_cum],
    }


def render(summary: dict[str, Any]) -> list[str]:
    """Format a summary as indented table lines."""
    lines = [
        f"  profiled: {summary['profiled_cpu_s']} CPU-s over {summary['events']} events "
        "(yappi, CPU clock, all threads; the profiler inflates absolute times, read shares)",
        "  own CPU by package: "
        + ", ".join(f"{name} {share:.0%}" for name, share in summary["packages"].items()),
        f"  {'own':>5} {'cum':>5} {'calls/ev':>8}  {'package':<17} top functions by own time",
    ]
    for r in summary["top_own"]:
        lines.append(
            f"  {r['own_share']:>5.1%} {r['cum_share']:>5.1%} {r['calls_per_event']:>8}  "
            f"{r['package']:<17} {r['function']}"
        )
    header = f"  {'own':>5} {'cum':>5} {'calls/ev':>8}  reconciler functions by cumulative time"
    lines.append(header)
    for r in summary["top_cumulative_reconciler"]:
        lines.append(
            f"  {r['own_share']:>5.1%} {r['cum_share']:>5.1%} {r['calls_per_event']:>8}  "
            f"{r['function']}"
        )
    return lines
