"""What counting webhook reliability costs each webhook, in CPU.

In one process, on SQLite: signed simulator webhooks for tracked payments go through
`services.webhooks.ingest_webhook` (verify, inbox INSERT, locked snapshot, the decision,
UPDATE, timeline, commit), as `POST /webhooks/simulator` runs it without the HTTP server.
The thread's CPU time is taken around each whole ingest and around each call of the
recording hooks inside it; the flush (once a second in a server: here once per 200
webhooks, a rate of 200/s) is timed too. The share is (hooks + flushes) / ingests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from reconciler.bootstrap import bootstrap
from reconciler.config import Settings
from reconciler.entrypoints.commands import upgrade
from reconciler.services import reliability, webhooks
from reconciler.services.merchants import create_merchant
from reconciler.services.payments import PaymentRequest, register_payment

SECRET = "whsec_" + base64.b64encode(b"bench-recording-secret-0123456789").decode()
TRACKED = 200
FLUSH_EVERY = 200
T = TypeVar("T")


class Stopwatch:
    """Thread CPU seconds spent inside wrapped functions."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, function: Callable[..., T]) -> Callable[..., T]:
        def timed(*args: Any, **kwargs: Any) -> T:
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.thread_time() - started
                self.calls += 1

        return timed


def signed(msg_id: str, body: bytes, now: datetime) -> dict[str, str]:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    ts = int(now.timestamp())
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def body(gid: str, status: str, at: datetime) -> bytes:
    stamp = at.isoformat().replace("+00:00", "Z")
    data = {"id": gid, "status": status, "amount": 1000, "currency": "EUR", "updated_at": stamp}
    return json.dumps({"type": f"payment.{status}", "timestamp": stamp, "data": data}).encode()


def run(quick: bool) -> dict[str, Any]:
    count = 3000 if quick else 20_000
    with tempfile.TemporaryDirectory(prefix="bench-recording-") as tmp:
        settings = Settings.from_env(
            {
                "RECONCILER_DATABASE_URL": f"sqlite:///{Path(tmp) / 'reconciler.db'}",
                "RECONCILER_SIMULATOR_URL": "http://127.0.0.1:9",  # never called here
                "RECONCILER_SIMULATOR_WEBHOOK_SECRET": SECRET,
            }
        )
        upgrade(settings)
        ctx = bootstrap(settings)
        try:
            merchant, _ = create_merchant(ctx, "bench")
            for n in range(TRACKED):
                request = PaymentRequest(f"r{n}", "simulator", 1000, "EUR", f"sim_rec_{n}")
                register_payment(ctx, merchant, request)
            hooks, ingests, flushes = Stopwatch(), Stopwatch(), Stopwatch()
            originals = {
                name: getattr(reliability, name)
                for name in ("note_webhook", "note_duplicate", "note_bad_signature")
            }
            for name, function in originals.items():
                setattr(reliability, name, hooks.wrap(function))
            ingest = ingests.wrap(webhooks.ingest_webhook)
            flush = flushes.wrap(reliability.flush)
            start = datetime.now(UTC)
            try:
                for i in range(count):
                    now = datetime.now(UTC)
                    status = ("processing", "requires_action")[(i // TRACKED) % 2]
                    occurred = start + timedelta(milliseconds=i)
                    raw = body(f"sim_rec_{i % TRACKED}", status, occurred)
                    ingest(ctx, "simulator", signed(f"msg_{i}", raw, now), raw)
                    if (i + 1) % FLUSH_EVERY == 0:
                        flush(ctx)
                flush(ctx)
            finally:
                for name, function in originals.items():
                    setattr(reliability, name, function)
        finally:
            ctx.close()
    share = (hooks.seconds + flushes.seconds) / ingests.seconds
    return {
        "webhooks": count,
        "ingest_cpu_us_per_webhook": round(1e6 * ingests.seconds / count, 1),
        "hooks_cpu_us_per_webhook": round(1e6 * hooks.seconds / count, 2),
        "flush_cpu_us_per_webhook": round(1e6 * flushes.seconds / count, 2),
        "recording_share": round(share, 4),
    }


def render(result: dict[str, Any]) -> str:
    return (
        f"recording webhook reliability: {result['webhooks']} webhooks ingested in-process "
        f"(SQLite): {result['ingest_cpu_us_per_webhook']} µs CPU each, of which the hooks "
        f"{result['hooks_cpu_us_per_webhook']} µs and the flushes "
        f"{result['flush_cpu_us_per_webhook']} µs: {result['recording_share']:.1%}"
    )
