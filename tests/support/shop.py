"""A merchant driving the service's API in tests: endpoints, payments, gateway webhooks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select
from standardwebhooks import Webhook

from reconciler.adapters.models import NotificationDelivery, NotificationEvent
from reconciler.bootstrap import Context
from reconciler.entrypoints.app import create_app
from reconciler.services.merchants import create_merchant
from reconciler.services.sweep import Sweeper
from support.app import SIM_SECRET, MerchantAuth, register_payment
from support.clock import FakeClock
from support.receiver import Received
from support.simulator import Simulator


def simulator_webhook(gid: str, status: str, at: datetime) -> tuple[bytes, dict[str, str]]:
    """A simulator webhook, signed with the simulator's secret by standardwebhooks."""
    stamp = at.isoformat().replace("+00:00", "Z")
    data = {"id": gid, "status": status, "amount": 1000, "currency": "EUR", "updated_at": stamp}
    body = json.dumps({"type": f"payment.{status}", "timestamp": stamp, "data": data})
    msg_id = f"msg_{gid}_{status}"
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(SIM_SECRET).sign(msg_id, at, body),
        "Content-Type": "application/json",
    }
    return body.encode(), headers


@dataclass(frozen=True)
class Endpoint:
    id: str
    secret: str


class Shop:
    """A merchant driving the service's API: endpoints, payments, gateway webhooks."""

    def __init__(self, ctx: Context, simulator: Simulator, name: str = "acme") -> None:
        self.ctx = ctx
        self.simulator = simulator
        self.client: FlaskClient = create_app(ctx=ctx).test_client()
        record, key = create_merchant(ctx, name)
        self.merchant = MerchantAuth(record.id, key)
        self.name = name

    def endpoint(self, url: str, events: list[str] | None = None) -> Endpoint:
        body: dict[str, Any] = {"url": url}
        if events is not None:
            body["events"] = events
        created = self.client.post(
            "/v1/webhook_endpoints", json=body, headers=self.merchant.headers
        )
        assert created.status_code == 201, created.json
        return Endpoint(created.json["id"], created.json["secret"])

    def payment(self, reference: str) -> tuple[str, str]:
        """Register a payment at the simulator and here; return (our id, gateway id)."""
        gid = self.simulator.create(amount=1000, currency="EUR", reference=reference)["id"]
        pid = register_payment(
            self.client, self.merchant, gid, reference=f"{self.name}-{reference}"
        )
        return pid, gid

    def report(self, gid: str, status: str) -> None:
        """Have the gateway tell us the payment's new status (a signed webhook)."""
        body, headers = simulator_webhook(gid, status, self.ctx.clock())
        answer = self.client.post("/webhooks/simulator", data=body, headers=headers)
        assert answer.status_code == 200, answer.json

    def get(self, path: str) -> Any:
        answer = self.client.get(path, headers=self.merchant.headers)
        assert answer.status_code == 200, answer.json
        return answer.json

    def deliveries(self, endpoint: Endpoint) -> list[dict[str, Any]]:
        return list(self.get(f"/v1/webhook_endpoints/{endpoint.id}/deliveries?limit=100")["data"])


def verified(request: Received, secret: str) -> dict[str, Any]:
    payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return payload


def eventually(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait for something the service does on its own threads (a generous bound, not a
    timing assertion: the test fails only if it never happens)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} never happened")


def events(ctx: Context) -> list[NotificationEvent]:
    with ctx.read() as session:
        stmt = select(NotificationEvent).order_by(NotificationEvent.created_at)
        return list(session.scalars(stmt))


def deliveries(ctx: Context) -> list[NotificationDelivery]:
    with ctx.read() as session:
        return list(session.scalars(select(NotificationDelivery)))


def pending(ctx: Context) -> list[NotificationDelivery]:
    return [d for d in deliveries(ctx) if d.status == "pending"]


def deliver_all(sweeper: Sweeper, ctx: Context, clock: FakeClock, rounds: int = 300) -> int:
    """Jump the clock to the next due delivery and sweep, until none is pending."""
    for sweeps in range(rounds):
        due = [d.next_attempt_at for d in pending(ctx) if d.next_attempt_at is not None]
        if not due:
            return sweeps
        clock.now = max(clock.now, min(due))
        sweeper.sweep_once(clock.now)
    raise AssertionError("deliveries did not settle")
