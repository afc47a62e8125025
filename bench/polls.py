"""Poll throughput: polls per second of `Sweeper.sweep_once` against the simulator.

The simulator answers every call after a fixed latency L (no other fault); payments never
settle during the run, so every poll is a full round trip plus a stored answer. With C
poll threads the ceiling is C / L polls per second; the result is the fraction of it the
sweep reaches (SQLite, one process, batch of 500).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.common import TESTS, median, say
from reconciler.bootstrap import Context, bootstrap
from reconciler.config import Settings
from reconciler.entrypoints.commands import upgrade
from reconciler.services.merchants import create_merchant
from reconciler.services.payments import PaymentRequest, register_payment
from reconciler.services.sweep import Sweeper

LATENCY_S = 0.05
BATCH = 500
REPEAT = 3
# The simulator: every call answered after exactly LATENCY_S; nothing settles or is sent.
SIMULATOR = {
    "seed": 5,
    "latency_min": LATENCY_S,
    "latency_max": LATENCY_S,
    "settle_min": 86400,
    "settle_max": 86400,
    "no_webhooks": True,
}


def _settings(db_url: str, sim_url: str, concurrency: int) -> Settings:
    return Settings(
        database_url=db_url,
        simulator_url=sim_url,
        sweep_concurrency=concurrency,
        sweep_batch_size=BATCH,
    )


def make_all_due(ctx: Context) -> None:
    """Make every payment due now, with no lease."""
    with ctx.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE payments SET next_poll_at = '2000-01-01 00:00:00', "
                "lease_owner = NULL, lease_expires_at = NULL"
            )
        )


def run(quick: bool) -> dict[str, Any]:
    sys.path.insert(0, str(TESTS))
    from support.simulator import run_simulator

    concurrencies = [16] if quick else [16, 32, 64]
    tmp = Path(tempfile.mkdtemp(prefix="bench-polls-"))
    rows = []
    try:
        db_url = f"sqlite:///{tmp / 'polls.db'}"
        upgrade(Settings(database_url=db_url))
        with run_simulator(**SIMULATOR) as sim:
            say(f"polls: creating {BATCH} payments at the simulator...")
            with ThreadPoolExecutor(8) as pool:
                gids = list(
                    pool.map(lambda i: sim.create(settle_after_s=86400)["id"], range(BATCH))
                )
            ctx = bootstrap(_settings(db_url, sim.url, 4))
            merchant, _ = create_merchant(ctx, "bench")
            for i, gid in enumerate(gids):
                register_payment(
                    ctx,
                    merchant,
                    PaymentRequest(f"poll-{i}", "simulator", 1000, "USD", gateway_payment_id=gid),
                )
            ctx.close()
            for concurrency in concurrencies:
                say(f"polls: concurrency {concurrency}, latency {LATENCY_S * 1000:.0f} ms...")
                ctx = bootstrap(_settings(db_url, sim.url, concurrency))
                sweeper = Sweeper(ctx)
                rates = []
                cpu_per_poll = []
                try:
                    for _ in range(REPEAT):
                        make_all_due(ctx)
                        cpu = time.process_time()
                        report = sweeper.sweep_once()
                        cpu = time.process_time() - cpu
                        assert report.polled == BATCH, report
                        rates.append(report.polled / report.duration_s)
                        cpu_per_poll.append(cpu / report.polled)
                finally:
                    sweeper.close()
                    ctx.close()
                limit = concurrency / LATENCY_S
                rate = median(rates)
                rows.append(
                    {
                        "concurrency": concurrency,
                        "polls_per_s": round(rate, 1),
                        "limit_per_s": round(limit, 1),
                        "fraction": round(rate / limit, 3),
                        # This process is the whole service side (SQLite is in-process).
                        "cpu_ms_per_poll": round(median(cpu_per_poll) * 1000, 2),
                    }
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"latency_s": LATENCY_S, "batch": BATCH, "repeat": REPEAT, "runs": rows}


def render(result: dict[str, Any]) -> str:
    lines = [
        f"poll throughput (simulator latency {result['latency_s'] * 1000:.0f} ms, "
        f"batch {result['batch']}, median of {result['repeat']})"
    ]
    for row in result["runs"]:
        lines.append(
            f"  C={row['concurrency']:<3} {row['polls_per_s']:>8.1f} polls/s of a "
            f"{row['limit_per_s']:.0f}/s limit: fraction {row['fraction']:.3f}; "
            f"service CPU {row['cpu_ms_per_poll']:.2f} ms per poll"
        )
    return "\n".join(lines)
