"""Merchant notifications delivered by the engine: a status change reaches the endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import pytest
from flask.testing import FlaskClient
from standardwebhooks import Webhook
from support.app import SIM_SECRET, MerchantAuth, make_settings, register_payment
from support.clock import FakeClock
from support.receiver import Receiver, run_receiver
from support.simulator import Simulator

from reconciler.bootstrap import Context, bootstrap
from reconciler.entrypoints.app import create_app
from reconciler.services.merchants import create_merchant
from reconciler.services.sweep import Sweeper


def simulator_webhook(gid: str, status: str, at: datetime) -> tuple[bytes, dict[str, str]]:
    """A simulator webhook, signed with the simulator's secret by standardwebhooks."""
    stamp = at.isoformat().replace("+00:00", "Z")
    data = {"id": gid, "status": status, "amount": 5, "currency": "EUR", "updated_at": stamp}
    body = json.dumps({"type": f"payment.{status}", "timestamp": stamp, "data": data})
    msg_id = f"msg_{gid}_{status}"
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(SIM_SECRET).sign(msg_id, at, body),
        "Content-Type": "application/json",
    }
    return body.encode(), headers


@pytest.fixture
def notify_ctx(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[Context]:
    settings = make_settings(db_url, simulator.url, notify_allow_private=1)
    context = bootstrap(settings, clock=clock)
    yield context
    context.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with run_receiver() as running:
        yield running


def test_a_status_change_is_delivered_signed_to_the_merchants_endpoint(
    notify_ctx: Context, simulator: Simulator, receiver: Receiver, clock: FakeClock
) -> None:
    record, key = create_merchant(notify_ctx, "acme")
    merchant = MerchantAuth(record.id, key)
    client: FlaskClient = create_app(ctx=notify_ctx).test_client()
    created = client.post(
        "/v1/webhook_endpoints", json={"url": receiver.url + "/hooks"}, headers=merchant.headers
    )
    assert created.status_code == 201, created.json
    secret = created.json["secret"]
    gid = simulator.create(amount=5, currency="EUR", reference="n1")["id"]
    pid = register_payment(client, merchant, gid)
    body, headers = simulator_webhook(gid, "succeeded", clock.now)
    assert client.post("/webhooks/simulator", data=body, headers=headers).status_code == 200

    sweeper = Sweeper(notify_ctx)
    try:
        report = sweeper.sweep_once(clock.now)
    finally:
        sweeper.close()

    assert report.deliveries == {"2xx": 1}
    [delivery] = receiver.received
    payload = Webhook(secret).verify(delivery.body, delivery.headers)
    assert payload["type"] == "payment.succeeded"
    assert payload["data"]["id"] == pid
    assert payload["data"]["status"] == "succeeded"
    assert payload["sequence"] == 1
    assert json.loads(delivery.body)["id"] == delivery.headers["webhook-id"]
    listed = client.get(
        f"/v1/webhook_endpoints/{created.json['id']}/deliveries", headers=merchant.headers
    )
    assert [d["status"] for d in listed.json["data"]] == ["delivered"]
