"""Merchant notification delivery: throughput, and latency beside an endpoint that times out.

Both parts run the service's own in-process sweep (`SweepJob` over `Sweeper.tick`, as
`reconciler serve` does) on SQLite, against loopback receivers, with payments changed
through the real webhook path (a signed simulator webhook applied by `ingest_webhook`,
whose transaction writes the event and its deliveries).

1. Throughput: every endpoint answers after L = 50 ms. With C delivery slots
   (`RECONCILER_NOTIFY_CONCURRENCY`) the ceiling is C / L deliveries per second; the
   result is the fraction of it reached, from the first request to the last answer.
2. Isolation: one merchant has a healthy endpoint and one that never answers within
   `RECONCILER_NOTIFY_TIMEOUT_S`. Status changes arrive at a steady rate; the latency is
   from each event's `created_at` (the change's transaction) to its delivery's
   `delivered_at` at the healthy endpoint, which answers at once: an upper bound on the
   time to the first attempt (p50, p99).

Receivers run in their own processes, like a merchant's server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from standardwebhooks import Webhook

from bench.common import postgres, say
from reconciler.adapters.models import NotificationDelivery, NotificationEvent
from reconciler.bootstrap import Context, bootstrap
from reconciler.config import Settings
from reconciler.demo.stack import STACK_SECRETS_KEY
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

# A receiver in its own process (so it does not share the service's interpreter lock):
# answers 200 after `delay` seconds; prints its port, then serves until killed.
RECEIVER = """
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
delay = float(sys.argv[1])
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        time.sleep(delay)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
server.request_queue_size = 256
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@contextmanager
def _receiver(delay_s: float) -> Iterator[str]:
    """Run a receiver process answering after `delay_s`; yield its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, str(delay_s)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield f"http://127.0.0.1:{int(proc.stdout.readline())}"
    finally:
        proc.kill()
        proc.wait()


def _settings(db_url: str, per_merchant: int = CONCURRENCY) -> Settings:
    return Settings.from_env(
        {
            "RECONCILER_DATABASE_URL": db_url,
            "RECONCILER_SIMULATOR_URL": "http://127.0.0.1:9",  # never called: no polls
            "RECONCILER_SIMULATOR_WEBHOOK_SECRET": SECRET,
            "RECONCILER_POLL_FIRST_DELAY_S": "86400",
            "RECONCILER_NOTIFY_ALLOW_PRIVATE": "1",
            "RECONCILER_NOTIFY_CONCURRENCY": str(CONCURRENCY),
            # One merchant in the first two parts: it may use every slot (their ceiling
            # is the engine's); the fairness part runs with the default cap.
            "RECONCILER_NOTIFY_MAX_IN_FLIGHT_PER_MERCHANT": str(per_merchant),
            "RECONCILER_NOTIFY_TIMEOUT_S": str(TIMEOUT_S),
            "RECONCILER_SWEEP_INTERVAL_S": "1",
            "RECONCILER_SECRETS_KEY": STACK_SECRETS_KEY,  # endpoint secrets are sealed
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
def _service(db_url: str, per_merchant: int = CONCURRENCY) -> Iterator[tuple[Context, SweepJob]]:
    upgrade(Settings(database_url=db_url))
    ctx = bootstrap(_settings(db_url, per_merchant))
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


def _wait(predicate: Any, timeout: float, what: str, every_s: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:g} s")
        time.sleep(every_s)


def _delivered(ctx: Context) -> list[NotificationDelivery]:
    with ctx.read() as session:
        stmt = select(NotificationDelivery).where(NotificationDelivery.status == "delivered")
        return list(session.scalars(stmt))


def _delivered_count(ctx: Context) -> int:
    """Count delivered notifications (cheaper than loading them: the wait polls this)."""
    with ctx.read() as session:
        stmt = select(func.count()).where(NotificationDelivery.status == "delivered")
        return int(session.scalar(stmt) or 0)


def _start(job: SweepJob) -> None:
    """Start the sweep and wake it at once (a fresh process waits for the interval)."""
    job.start()
    job.wake(datetime.now(UTC))


def throughput(
    db_url: str,
    events: int,
    around: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> dict[str, Any]:
    """Deliver `events` × ENDPOINTS notifications; `around()` wraps the sweep's work only."""
    with _receiver(LATENCY_S) as url, _service(db_url) as (ctx, job):
        merchant, _ = create_merchant(ctx, "bench")
        for i in range(ENDPOINTS):
            create_endpoint(ctx, merchant, url=f"{url}/e{i}", events=None, description=None)
        for gid in _payments(ctx, merchant, events, "t"):
            _succeed(ctx, gid)
        total = events * ENDPOINTS
        say(f"deliveries: {total} due, C={CONCURRENCY}, endpoint latency {LATENCY_S * 1000:.0f} ms")
        with around():
            # This process is the service (SQLite is in-process; receivers are not).
            cpu = time.process_time()
            started = datetime.now(UTC)
            _start(job)
            # Seldom: this process's CPU is the service's figure (the end time is read
            # from the rows, so the wait's pace does not change the rate).
            _wait(lambda: _delivered_count(ctx) >= total, 120, "delivery", every_s=0.1)
            cpu = time.process_time() - cpu
        done = max(d.delivered_at for d in _delivered(ctx) if d.delivered_at is not None)
    elapsed = (done - started).total_seconds()
    rate = total / elapsed
    limit = CONCURRENCY / LATENCY_S
    return {
        "deliveries": total,
        "seconds": round(elapsed, 2),
        "per_s": round(rate, 1),
        "limit_per_s": round(limit, 1),
        "fraction": round(rate / limit, 3),
        "cpu_ms_per_delivery": round(cpu / total * 1000, 3),
    }


def isolation(db_url: str, events: int, rate_per_s: float) -> dict[str, Any]:
    with (
        _receiver(0.0) as healthy,
        _receiver(3600.0) as slow,  # never answers: every attempt times out
        _service(db_url) as (ctx, job),
    ):
        merchant, _ = create_merchant(ctx, "bench")
        slow_endpoint, _ = create_endpoint(
            ctx, merchant, url=f"{slow}/slow", events=None, description=None
        )
        create_endpoint(ctx, merchant, url=f"{healthy}/ok", events=None, description=None)
        gids = _payments(ctx, merchant, events, "i")
        _start(job)
        say(f"deliveries: {events} changes at {rate_per_s:g}/s beside an endpoint timing out...")
        for gid in gids:
            _succeed(ctx, gid)
            time.sleep(1 / rate_per_s)
        _wait(lambda: len(_delivered(ctx)) >= events, 60, "delivery")
        with ctx.read() as session:
            rows = session.execute(
                select(NotificationDelivery, NotificationEvent.created_at).join(
                    NotificationEvent, NotificationEvent.id == NotificationDelivery.event_id
                )
            ).all()
    latencies = sorted(
        (d.delivered_at - created).total_seconds()
        for d, created in rows
        if d.endpoint_id != slow_endpoint.id and d.delivered_at is not None
    )
    slow_attempts = sum(d.attempts for d, _ in rows if d.endpoint_id == slow_endpoint.id)
    return {
        "changes": events,
        "rate_per_s": rate_per_s,
        "p50_s": round(_quantile(latencies, 0.5), 3),
        "p99_s": round(_quantile(latencies, 0.99), 3),
        "max_s": round(latencies[-1], 3),
        "slow_attempts": slow_attempts,
    }


def _quantile(ordered: list[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def run(quick: bool) -> dict[str, Any]:
    from bench import delivery_fairness  # it builds on this module's helpers

    tmp = Path(tempfile.mkdtemp(prefix="bench-deliveries-"))
    events, changes = (40, 60) if quick else (150, 300)
    result: dict[str, Any] = {
        "latency_s": LATENCY_S,
        "concurrency": CONCURRENCY,
        "endpoints": ENDPOINTS,
        "timeout_s": TIMEOUT_S,
        "runs": [],
    }
    try:
        with postgres() as server:
            databases = ["sqlite"] + (["postgresql"] if server is not None else [])
            for database in databases:

                def fresh(name: str, database: str = database) -> str:
                    if database == "sqlite":
                        return f"sqlite:///{tmp / f'{name}.db'}"
                    return str(server.create_database(f"bench_deliveries_{name}"))

                say(f"deliveries on {database}...")
                result["runs"].append(
                    {
                        "database": database,
                        "throughput": throughput(fresh("throughput"), events),
                        "isolation": isolation(fresh("isolation"), changes, 20.0),
                        "fairness": delivery_fairness.fairness(fresh("fairness"), changes, 20.0),
                    }
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def render(result: dict[str, Any]) -> str:
    lines = [
        f"deliveries (endpoint latency {result['latency_s'] * 1000:.0f} ms, "
        f"C={result['concurrency']}, {result['endpoints']} endpoints)"
    ]
    for run in result["runs"]:
        t, i = run["throughput"], run["isolation"]
        lines += [
            f"  {run['database']}: {t['deliveries']} deliveries in {t['seconds']} s: "
            f"{t['per_s']:.1f}/s of a {t['limit_per_s']:.0f}/s limit: "
            f"fraction {t['fraction']:.3f}; "
            f"service CPU {t['cpu_ms_per_delivery']:.2f} ms per delivery",
            f"  {run['database']}: beside an endpoint timing out ({result['timeout_s']:g} s), "
            f"{i['changes']} changes at {i['rate_per_s']:g}/s, change to delivered at the "
            f"healthy endpoint p50 {i['p50_s'] * 1000:.0f} ms, p99 {i['p99_s'] * 1000:.0f} ms "
            f"(max {i['max_s'] * 1000:.0f} ms; {i['slow_attempts']} attempts at the slow one)",
        ]
        if "fairness" in run:
            from bench import delivery_fairness

            lines.append(delivery_fairness.render(run["database"], run["fairness"]))
    return "\n".join(lines)
