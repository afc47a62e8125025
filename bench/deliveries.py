"""Merchant notification delivery: throughput, and latency beside an endpoint that times out.

Both parts run the service's own in-process sweep (`SweepJob` over `Sweeper.tick`, as
`reconciler serve` does) on SQLite, against loopback receivers, with payments changed
through the real webhook path (a signed simulator webhook applied by `ingest_webhook`,
whose transaction writes the event and its deliveries).

1. Throughput: every endpoint answers after L = 50 ms. With C delivery slots
   (`RECONCILER_NOTIFY_CONCURRENCY`) the ceiling is C / L deliveries per second; the
   result is the fraction of it reached, from the start of the sweep to the last answer.
2. Isolation: one merchant has a healthy endpoint and one that never answers within
   `RECONCILER_NOTIFY_TIMEOUT_S`. Status changes arrive at a steady rate; the latency is
   from the commit of each change to the first request of its event at the healthy
   endpoint (p50, p99).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook

from bench.common import TESTS, say
from reconciler.bootstrap import Context, bootstrap
from reconciler.config import Settings
from reconciler.entrypoints.commands import upgrade
from reconciler.entrypoints.scheduler import SweepJob
from reconciler.services.endpoints import create_endpoint
from reconciler.services.merchants import create_merchant
from reconciler.services.payments import PaymentRequest, register_payment
from reconciler.services.sweep import Sweeper
from reconciler.services.webhooks import ingest_webhook

LATENCY_S = 0.05
CONCURRENCY = 16
ENDPOINTS = 8  # twice the slots one endpoint may hold, so the per-endpoint cap never binds
TIMEOUT_S = 2.0  # the slow endpoint's attempts all run into it
SECRET = "whsec_" + "YmVuY2gtb25seS1zaW11bGF0b3Itc2VjcmV0"  # bench-only, not a real secret


def _settings(db_url: str) -> Settings:
    return Settings.from_env(
        {
            "RECONCILER_DATABASE_URL": db_url,
            "RECONCILER_SIMULATOR_URL": "http://127.0.0.1:9",  # never called: no polls
            "RECONCILER_SIMULATOR_WEBHOOK_SECRET": SECRET,
            "RECONCILER_POLL_FIRST_DELAY_S": "86400",
            "RECONCILER_NOTIFY_ALLOW_PRIVATE": "1",
            "RECONCILER_NOTIFY_CONCURRENCY": str(CONCURRENCY),
            "RECONCILER_NOTIFY_TIMEOUT_S": str(TIMEOUT_S),
            "RECONCILER_SWEEP_INTERVAL_S": "1",
        }
    )


def _succeed(ctx: Context, gid: str) -> None:
    """Tell the service, as the gateway would, that a payment succeeded."""
    at = datetime.now(UTC)
    stamp = at.isoformat().replace("+00:00", "Z")
    data = {"id": gid, "status": "succeeded", "amount": 5, "currency": "EUR", "updated_at": stamp}
    body = json.dumps({"type": "payment.succeeded", "timestamp": stamp, "data": data})
    msg_id = f"msg_{gid}"
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, at, body),
    }
    ingest_webhook(ctx, "simulator", headers, body.encode())


@contextmanager
def _service(tmp: Path, name: str) -> Iterator[tuple[Context, SweepJob]]:
    db_url = f"sqlite:///{tmp / f'{name}.db'}"
    upgrade(Settings(database_url=db_url))
    ctx = bootstrap(_settings(db_url))
    job = SweepJob(Sweeper(ctx), interval_s=1.0, lock_name=db_url)
    try:
        yield ctx, job
    finally:
        job.stop()
        ctx.close()


def _payments(ctx: Context, merchant: Any, count: int, prefix: str) -> list[str]:
    gids = []
    for i in range(count):
        gid = f"sim_{prefix}_{i}"
        register_payment(ctx, merchant, PaymentRequest(f"{prefix}-{i}", "simulator", 5, "EUR", gid))
        gids.append(gid)
    return gids


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.005)


def throughput(tmp: Path, events: int) -> dict[str, Any]:
    from notifyhelpers import run_receiver

    with run_receiver() as receiver, _service(tmp, "throughput") as (ctx, job):
        receiver.delay_s = LATENCY_S
        merchant, _ = create_merchant(ctx, "bench")
        for i in range(ENDPOINTS):
            create_endpoint(
                ctx, merchant, url=f"{receiver.url}/e{i}", events=None, description=None
            )
        for gid in _payments(ctx, merchant, events, "t"):
            _succeed(ctx, gid)
        total = events * ENDPOINTS
        say(f"deliveries: {total} due, C={CONCURRENCY}, endpoint latency {LATENCY_S * 1000:.0f} ms")
        started = time.monotonic()
        job.start()
        _wait(lambda: len(receiver.received) >= total and receiver.hanging() == 0, 120, "delivery")
        elapsed = time.monotonic() - started
    rate = total / elapsed
    limit = CONCURRENCY / LATENCY_S
    return {
        "deliveries": total,
        "seconds": round(elapsed, 2),
        "per_s": round(rate, 1),
        "limit_per_s": round(limit, 1),
        "fraction": round(rate / limit, 3),
        "requests": len(receiver.received),
    }


def isolation(tmp: Path, events: int, rate_per_s: float) -> dict[str, Any]:
    from notifyhelpers import run_receiver

    with (
        run_receiver() as healthy,
        run_receiver() as slow,
        _service(tmp, "isolation") as (ctx, job),
    ):
        slow.hold = threading.Event()  # never answers: every attempt times out
        merchant, _ = create_merchant(ctx, "bench")
        create_endpoint(ctx, merchant, url=f"{slow.url}/slow", events=None, description=None)
        create_endpoint(ctx, merchant, url=f"{healthy.url}/ok", events=None, description=None)
        gids = _payments(ctx, merchant, events, "i")
        job.start()
        committed: dict[str, float] = {}
        say(f"deliveries: {events} changes at {rate_per_s:g}/s beside an endpoint timing out...")
        for gid in gids:
            _succeed(ctx, gid)
            committed[gid] = time.monotonic()
            time.sleep(1 / rate_per_s)
        _wait(lambda: len({r.webhook_id for r in healthy.received}) >= events, 60, "delivery")
        slow_requests = len(slow.received)
        slow.hold.set()
        first: dict[str, float] = {}
        for request in healthy.received:
            gid = json.loads(request.body)["data"]["gateway_payment_id"]
            first.setdefault(gid, request.at)
    latencies = sorted(first[gid] - committed[gid] for gid in gids)
    return {
        "changes": events,
        "rate_per_s": rate_per_s,
        "p50_s": round(_quantile(latencies, 0.5), 3),
        "p99_s": round(_quantile(latencies, 0.99), 3),
        "max_s": round(latencies[-1], 3),
        "slow_attempts": slow_requests,
    }


def _quantile(ordered: list[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def run(quick: bool) -> dict[str, Any]:
    sys.path.insert(0, str(TESTS))
    tmp = Path(tempfile.mkdtemp(prefix="bench-deliveries-"))
    try:
        return {
            "latency_s": LATENCY_S,
            "concurrency": CONCURRENCY,
            "endpoints": ENDPOINTS,
            "timeout_s": TIMEOUT_S,
            "throughput": throughput(tmp, 40 if quick else 150),
            "isolation": isolation(tmp, 60 if quick else 300, 20.0),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def render(result: dict[str, Any]) -> str:
    t, i = result["throughput"], result["isolation"]
    return "\n".join(
        [
            f"deliveries (endpoint latency {result['latency_s'] * 1000:.0f} ms, "
            f"C={result['concurrency']}, {result['endpoints']} endpoints)",
            f"  {t['deliveries']} deliveries in {t['seconds']} s: {t['per_s']:.1f}/s of a "
            f"{t['limit_per_s']:.0f}/s limit: fraction {t['fraction']:.3f}",
            f"  beside an endpoint timing out ({result['timeout_s']:g} s): {i['changes']} "
            f"changes at {i['rate_per_s']:g}/s, change to first attempt at the healthy "
            f"endpoint p50 {i['p50_s'] * 1000:.0f} ms, p99 {i['p99_s'] * 1000:.0f} ms "
            f"(max {i['max_s'] * 1000:.0f} ms; {i['slow_attempts']} attempts at the slow one)",
        ]
    )
