"""Small helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1] / "tests"


def say(text: str) -> None:
    """Progress notes go to stderr; results to stdout."""
    print(text, file=sys.stderr, flush=True)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def timed(repeat: int, setup: Callable[[], Any], work: Callable[[], Any]) -> list[float]:
    """Run `setup` untimed then `work` timed, `repeat` times; return the durations (s)."""
    durations = []
    for _ in range(repeat):
        setup()
        started = time.perf_counter()
        work()
        durations.append(time.perf_counter() - started)
    return durations


def median(values: list[float]) -> float:
    return statistics.median(values)


@contextmanager
def postgres() -> Iterator[Any | None]:
    """A throw-away PostgreSQL server from tests/support/postgres.py, or None when unavailable."""
    sys.path.insert(0, str(TESTS))
    from support.postgres import throwaway_postgres, unavailable_reason

    reason = unavailable_reason()
    if reason:
        say(f"PostgreSQL unavailable, skipped: {reason}")
        yield None
        return
    with throwaway_postgres() as server:
        yield server
