"""One replica of the scale run: the in-process sweep job of `reconciler serve`, timed.

`python -m bench.scale_replica --database-url … --gateway-url … --out FILE` builds the
context as `serve` does and starts the same `SweepJob` (APScheduler, woken at the
earliest due time, NOTIFY from the other replicas), without the HTTP server in front.
Two timings are taken from outside the engine:

- the claim statement (`UPDATE … SKIP LOCKED … RETURNING`), by SQLAlchemy cursor
  events on the engine: the round trip of the statement and its rows;
- the whole `repository.claim_due` call (session set-up, connection check-out and
  BEGIN included; the commit is not), by wrapping the module's function.

On SIGTERM (or SIGINT) it writes a JSON file (each claim's wall time, both durations and
rows claimed, the calls made, the due notifications heard and its own CPU seconds), then
stops the job, whose calls in flight are still stored.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from types import FrameType
from typing import Any

from sqlalchemy import event

from reconciler.adapters import repository
from reconciler.bootstrap import bootstrap
from reconciler.config import Settings
from reconciler.entrypoints.scheduler import SweepJob
from reconciler.services.sweep import Sweeper

CLAIM_MARK = "SKIP LOCKED"


class ClaimTimer:
    """Collect claim timings: statement (cursor events) and `claim_due` call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # (wall time, seconds, rows, table or queue)
        self.statements: list[tuple[float, float, int, str]] = []
        self.calls: list[tuple[float, float, int, str]] = []

    def install(self, engine: Any) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def _before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if CLAIM_MARK in statement and statement.lstrip().upper().startswith("UPDATE"):
                conn.info["claim_started"] = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def _after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            started = conn.info.pop("claim_started", None)
            if started is not None:
                took = time.perf_counter() - started
                with self.lock:
                    table = statement.split()[1]
                    self.statements.append((time.time(), took, cursor.rowcount, table))

        original: Callable[..., list[Any]] = repository.claim_due

        def timed_claim_due(session: Any, queue: Any, **kwargs: Any) -> list[Any]:
            started = time.perf_counter()
            rows = original(session, queue, **kwargs)
            took = time.perf_counter() - started
            with self.lock:
                self.calls.append((time.time(), took, len(rows), queue.table.name))
            return rows

        repository.claim_due = timed_claim_due  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_replica", description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--gateway-url", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--name", default="replica")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    settings = Settings(
        database_url=args.database_url,
        simulator_url=args.gateway_url,
        sweep_concurrency=args.concurrency,
        sweep_batch_size=args.batch,
        log_level="WARNING",
    )
    ctx = bootstrap(settings)
    timer = ClaimTimer()
    timer.install(ctx.engine)
    sweeper = Sweeper(ctx)
    heard = [0]
    announce = sweeper.announce

    def counted_announce(at: datetime) -> None:
        heard[0] += 1
        announce(at)

    sweeper.announce = counted_announce  # type: ignore[method-assign]
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # One lock name per replica: several replicas on one host each sweep (as `serve`
    # does with a bind address per replica).
    job = SweepJob(sweeper, settings.sweep_interval_s, lock_name=f"{args.database_url}|{args.name}")
    started = time.time()
    job.start()
    print(f"replica {args.name} sweeping", flush=True)
    stop.wait()
    stopped = time.time()
    # The figures are written before the sweep is stopped: a slow stop on a saturated
    # machine (in-flight calls and stores draining) must not cost the run its figures.
    cpu = time.process_time()
    with timer.lock:
        out = {
            "name": args.name,
            "started": started,
            "stopped": stopped,
            "cpu_s": cpu,
            "calls": dict(sweeper.polls.counts),
            "notifications_heard": heard[0],
            "claim_statements": list(timer.statements),
            "claim_calls": list(timer.calls),
        }
    with open(args.out, "w") as handle:
        json.dump(out, handle)
    try:
        job.stop()
    finally:
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
