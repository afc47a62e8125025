"""Where a process's CPU goes: yappi (or py-spy samples), summed by package.

`profiled()` records this process while a block runs; `summarise` turns that into a
small table: the CPU share of each package, the functions with the most own time, and
the service's own functions with the most cumulative time (what a change in
`reconciler/` can remove). A function's own time includes the C functions it calls
directly (a `cursor.execute` counts for SQLAlchemy, a `socket.recv` for the standard
library's `http.client`), so the package shares add up to 100 %.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
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
RATE_HZ = 250


def package(path: str) -> str:
    """Name the group a function's source file belongs to (a full path, or py-spy's short one)."""
    if not path.startswith("/"):
        top = path.split("/", 1)[0].removesuffix(".py")
        if top in GROUPS:
            return GROUPS[top]
        if top in sys.stdlib_module_names:
            return "stdlib"
        return "bench harness" if top == "bench" else "other libraries"
    if "site-packages/" in path:
        top = path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
        return GROUPS.get(top, "other libraries")
    if "/reconciler/" in path:
        return "reconciler"
    if "/bench/" in path:
        return "bench harness"
    if path.startswith(_STDLIB) or path.startswith(sys.base_prefix):
        return "stdlib"
    return "other libraries"


@contextmanager
def profiled() -> Iterator[dict[str, Any]]:
    """Profile this process inside the block; the dict fills with what `summarise` reads.

    yappi (the default) measures every function's CPU time (the thread's CPU clock,
    every thread, C functions included) from inside: exact CPU, but its own cost per
    call inflates call-heavy code (SQLAlchemy) against C-heavy code, so read shares.
    `BENCH_PROFILER=py-spy` samples instead, from outside, the thread that last held
    the interpreter lock (`--gil`): cheap, but while no thread holds it (every thread
    waiting for SQLite's write lock or a socket) the last holder keeps being counted.
    Without permission to attach (ptrace) it falls back to yappi.
    """
    capture: dict[str, Any] = {}
    if os.environ.get("BENCH_PROFILER", "yappi") != "py-spy":
        with _yappi(capture):
            yield capture
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out = Path(tempfile.mkdtemp(prefix="bench-pyspy-")) / "stacks.txt"
    process = subprocess.Popen(
        [spy, "record", "--pid", str(os.getpid()), "--rate", str(RATE_HZ), "--function", "--gil"]
        + ["--format", "raw", "--nonblocking", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # attached by then, or refused
    if process.poll() is not None:
        with _yappi(capture):
            yield capture
        return
    try:
        yield capture
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        capture["stacks"] = _read_stacks(out)
        shutil.rmtree(out.parent, ignore_errors=True)


def _read_stacks(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


@contextmanager
def _yappi(capture: dict[str, Any]) -> Iterator[None]:
    yappi.clear_stats()
    yappi.set_clock_type("cpu")
    yappi.start(builtins=True, profile_threads=True)
    try:
        yield
    finally:
        yappi.stop()
        capture["yappi"] = list(yappi.get_func_stats())
        yappi.clear_stats()


def _where(stat: Any) -> str:
    module = stat.module
    for marker, prefix in (("site-packages/", ""), ("/reconciler/", "reconciler/")):
        if marker in module:
            module = prefix + module.split(marker, 1)[1]
            break
    else:
        module = module.rsplit("/", 1)[-1]
    return f"{module}:{stat.lineno} {stat.name}"


def _own(stat: Any) -> float:
    """Own time, with the C functions this function called directly."""
    return float(stat.tsub) + sum(c.tsub for c in stat.children if c.builtin)


def summarise(capture: dict[str, Any], events: int) -> dict[str, Any]:
    """Sum the profile by package and pick the top functions, per event."""
    if "stacks" in capture:
        return _from_samples(capture["stacks"], events)
    return _from_yappi(capture["yappi"], events)


def _frame(frame: str) -> tuple[str, str]:
    """Split py-spy's `function (path:line)` into the package and a readable name."""
    name, _, where = frame.rpartition(" (")
    path = where.rstrip(")").rpartition(":")[0]
    return package(path), f"{where.rstrip(')')} {name}"


def _from_samples(stacks: list[tuple[list[str], int]], events: int) -> dict[str, Any]:
    total = sum(count for _, count in stacks) or 1
    own: dict[str, int] = {}
    cumulative: dict[str, int] = {}
    for frames, count in stacks:
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            cumulative[frame] = cumulative.get(frame, 0) + count
    groups: dict[str, float] = {}
    for frame, count in own.items():
        group = _frame(frame)[0]
        groups[group] = groups.get(group, 0) + count

    def row(frame: str) -> dict[str, Any]:
        group, name = _frame(frame)
        return {
            "package": group,
            "function": name,
            "own_share": round(own.get(frame, 0) / total, 4),
            "cum_share": round(cumulative[frame] / total, 4),
        }

    by_own = sorted(own, key=lambda f: own[f], reverse=True)[:TOP]
    ours = [f for f in cumulative if _frame(f)[0] == "reconciler"]
    by_cum = sorted(ours, key=lambda f: cumulative[f], reverse=True)[:TOP]
    return {
        "profiler": f"py-spy --gil, {RATE_HZ} Hz: the thread holding the interpreter lock",
        "events": events,
        "samples": total,
        "packages": {
            k: round(v / total, 4) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])
        },
        "top_own": [row(f) for f in by_own],
        "top_cumulative_reconciler": [row(f) for f in by_cum],
    }


def _from_yappi(stats: list[Any], events: int) -> dict[str, Any]:
    python = [s for s in stats if not s.builtin]
    own = {id(s): _own(s) for s in python}
    total = sum(own.values()) or 1e-9
    groups: dict[str, float] = {}
    for s in python:
        name = package(s.module)
        groups[name] = groups.get(name, 0.0) + own[id(s)]

    def row(s: Any) -> dict[str, Any]:
        return {
            "package": package(s.module),
            "function": _where(s),
            "own_share": round(own[id(s)] / total, 4),
            "cum_share": round(s.ttot / total, 4),
        }

    by_own = sorted(python, key=lambda s: own[id(s)], reverse=True)[:TOP]
    ours = [s for s in python if package(s.module) == "reconciler"]
    by_cum = sorted(ours, key=lambda s: s.ttot, reverse=True)[:TOP]
    return {
        "profiler": "yappi, CPU clock, all threads (inflates call-heavy code)",
        "events": events,
        "samples": None,
        "profiled_cpu_s": round(total, 2),
        "packages": {
            k: round(v / total, 4) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])
        },
        "top_own": [row(s) for s in by_own],
        "top_cumulative_reconciler": [row(s) for s in by_cum],
    }


def render_summary(summary: dict[str, Any]) -> list[str]:
    """Format a summary as indented table lines (shares of the profiled CPU)."""
    if summary.get("samples"):
        samples = f", {summary['samples']} samples"
    else:
        samples = f", {summary['profiled_cpu_s']} CPU-s profiled"
    lines = [
        f"  profiler: {summary['profiler']}{samples}",
        "  CPU by package (own time): "
        + ", ".join(f"{name} {share:.0%}" for name, share in summary["packages"].items()),
        f"  {'own':>6} {'cum':>6}  {'package':<17} top functions by own time",
    ]
    for r in summary["top_own"]:
        lines.append(
            f"  {r['own_share']:>6.1%} {r['cum_share']:>6.1%}  {r['package']:<17} {r['function']}"
        )
    lines.append(f"  {'own':>6} {'cum':>6}  reconciler functions by cumulative time")
    for r in summary["top_cumulative_reconciler"]:
        lines.append(f"  {r['own_share']:>6.1%} {r['cum_share']:>6.1%}  {r['function']}")
    return lines
