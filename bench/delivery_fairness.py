"""Deliveries fair across merchants: a healthy endpoint beside another merchant's hostile ones.

Merchant "mallory" has 4 endpoints whose receivers drip one header line every 0.5 s for
ever, and 6 payments changing (24 deliveries, each attempt running into the deadline,
retried on the backoff). Meanwhile merchant "acme" has status changes at a steady rate;
the latency is from each event's `created_at` to its delivery's `delivered_at` at acme's
endpoint, which answers at once (p50, p99). Also reported: the longest hostile attempt
(from the `delivery attempted` log lines), against the attempt deadline.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select

from bench.common import say
from bench.deliveries import (
    TIMEOUT_S,
    _payments,
    _quantile,
    _receiver,
    _service,
    _start,
    _succeed,
    _wait,
)
from reconciler.adapters.models import NotificationDelivery, NotificationEvent
from reconciler.config import Settings
from reconciler.services.endpoints import create_endpoint
from reconciler.services.merchants import create_merchant

HOSTILE_ENDPOINTS = 4
HOSTILE_CHANGES = 6

# A receiver in its own process that reads a request, then drips header lines until the
# sender hangs up; prints its port, then serves until killed.
DRIPPER = """
import select, socket, threading
def serve(conn):
    with conn:
        try:
            data = b""
            while b"\\r\\n\\r\\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            conn.sendall(b"HTTP/1.1 200 OK\\r\\n")
            n = 0
            while True:
                ready, _, _ = select.select([conn], [], [], 0.5)
                if ready and not conn.recv(65536):
                    return
                n += 1
                conn.sendall(b"X-Drip-%d: a\\r\\n" % n)
        except OSError:
            return
listener = socket.create_server(("127.0.0.1", 0), backlog=256)
print(listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


@contextmanager
def _dripper() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-c", DRIPPER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield f"http://127.0.0.1:{int(proc.stdout.readline())}"
    finally:
        proc.kill()
        proc.wait()


class _Attempts(logging.Handler):
    """Keep each attempt's endpoint and duration from the `delivery attempted` lines."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "delivery attempted":
            self.seen.append(
                (getattr(record, "endpoint_id", ""), getattr(record, "duration_s", 0.0))
            )


def fairness(db_url: str, changes: int, rate_per_s: float) -> dict[str, Any]:
    attempts = _Attempts()
    delivery_log = logging.getLogger("reconciler.services.delivery")
    delivery_log.addHandler(attempts)
    level = delivery_log.level
    delivery_log.setLevel(logging.INFO)
    try:
        with (
            _receiver(0.0) as healthy,
            _dripper() as drip,
            _service(db_url, per_merchant=Settings().notify_max_in_flight_per_merchant) as (
                ctx,
                job,
            ),
        ):
            mallory, _ = create_merchant(ctx, "mallory")
            hostile = {
                create_endpoint(ctx, mallory, url=f"{drip}/h{i}", events=None, description=None)[
                    0
                ].id
                for i in range(HOSTILE_ENDPOINTS)
            }
            acme, _ = create_merchant(ctx, "acme")
            create_endpoint(ctx, acme, url=f"{healthy}/ok", events=None, description=None)
            bad = _payments(ctx, mallory, HOSTILE_CHANGES, "m")
            good = _payments(ctx, acme, changes, "a")
            _start(job)
            for gid in bad:
                _succeed(ctx, gid)
            say(
                f"deliveries: {changes} changes at {rate_per_s:g}/s beside another merchant's "
                f"{HOSTILE_ENDPOINTS} dripping endpoints..."
            )
            for gid in good:
                _succeed(ctx, gid)
                time.sleep(1 / rate_per_s)

            def acme_done() -> bool:
                with ctx.read() as session:
                    stmt = select(NotificationDelivery).where(
                        NotificationDelivery.status == "delivered"
                    )
                    return len(list(session.scalars(stmt))) >= changes

            _wait(acme_done, 60, "acme's deliveries")
            with ctx.read() as session:
                rows = session.execute(
                    select(NotificationDelivery, NotificationEvent.created_at).join(
                        NotificationEvent, NotificationEvent.id == NotificationDelivery.event_id
                    )
                ).all()
    finally:
        delivery_log.removeHandler(attempts)
        delivery_log.setLevel(level)
    latencies = sorted(
        (d.delivered_at - created).total_seconds()
        for d, created in rows
        if d.endpoint_id not in hostile and d.delivered_at is not None
    )
    hostile_s = [s for endpoint, s in attempts.seen if endpoint in hostile]
    return {
        "changes": changes,
        "rate_per_s": rate_per_s,
        "p50_s": round(_quantile(latencies, 0.5), 3),
        "p99_s": round(_quantile(latencies, 0.99), 3),
        "max_s": round(latencies[-1], 3),
        "hostile_attempts": len(hostile_s),
        "hostile_longest_s": round(max(hostile_s, default=0.0), 3),
        "timeout_s": TIMEOUT_S,
    }


def render(database: str, f: dict[str, Any]) -> str:
    return (
        f"  {database}: beside another merchant's {HOSTILE_ENDPOINTS} dripping endpoints, "
        f"{f['changes']} changes at {f['rate_per_s']:g}/s, change to delivered p50 "
        f"{f['p50_s'] * 1000:.0f} ms, p99 {f['p99_s'] * 1000:.0f} ms (max "
        f"{f['max_s'] * 1000:.0f} ms); {f['hostile_attempts']} hostile attempts, the longest "
        f"{f['hostile_longest_s']:.2f} s against a {f['timeout_s']:g} s deadline"
    )
