"""Each gateway account's webhooks are measured on their own, and `auto` is per account."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from support.app import MerchantAuth, make_settings
from support.clock import FakeClock
from support.simulator import Simulator
from support.webhooks import event

from reconciler.bootstrap import Context, bootstrap
from reconciler.entrypoints.app import create_app
from reconciler.services import reliability
from reconciler.services.merchants import create_merchant

TOKEN = "admin-token-for-reliability-accounts-tests"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
ACCOUNT_SECRET = "whsec_" + base64.b64encode(b"an account's own simulator secret").decode()


@pytest.fixture
def auto(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[Context]:
    settings = make_settings(db_url, simulator.url, admin_token=TOKEN, poll_first_delay_s="auto")
    context = bootstrap(settings, clock=clock, rand=random.Random(1).random)
    yield context
    context.close()


@pytest.fixture
def client(auto: Context) -> FlaskClient:
    return create_app(ctx=auto).test_client()


def own_account(client: FlaskClient, auto: Context) -> tuple[MerchantAuth, str]:
    record, key = create_merchant(auto, "acme")
    merchant = MerchantAuth(record.id, key)
    created = client.post(
        "/admin/gateway_accounts",
        json={
            "merchant_id": merchant.id,
            "gateway": "simulator",
            "credentials": {},
            "webhook_secret": ACCOUNT_SECRET,
        },
        headers=ADMIN,
    )
    assert created.status_code == 201, created.json
    return merchant, str(created.json["id"])


def post(client: FlaskClient, clock: FakeClock, path: str, msg_id: str, body: bytes) -> Any:
    ts = int(clock.now.timestamp())
    key = base64.b64decode(ACCOUNT_SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "Content-Type": "application/json",
    }
    return client.post(path, data=body, headers=headers)


def received(client: FlaskClient, account: str) -> dict[str, Any]:
    answer = client.get(f"/admin/gateway_accounts/{account}/reliability", headers=ADMIN)
    assert answer.status_code == 200, answer.json
    types: dict[str, Any] = answer.json["event_types"]
    return types


def test_an_accounts_webhooks_count_under_that_account_not_the_default(
    auto: Context, client: FlaskClient, clock: FakeClock
) -> None:
    _, account = own_account(client, auto)
    for n in range(3):
        body = event(f"sim_own_{n}", "succeeded", clock.now - timedelta(seconds=2))
        answer = post(client, clock, f"/webhooks/simulator/{account}", f"msg_own_{n}", body)
        assert answer.status_code == 200, answer.json
    reliability.flush(auto)
    assert received(client, account)["payment.succeeded"]["received"] == 3
    assert received(client, "default-simulator") == {}


def test_auto_chooses_a_first_delay_per_account_and_registration_uses_it(
    auto: Context, client: FlaskClient, clock: FakeClock
) -> None:
    merchant, account = own_account(client, auto)
    for n in range(60):  # past the 50 samples `auto` waits for
        body = event(f"sim_slow_{n}", "succeeded", clock.now - timedelta(seconds=40))
        post(client, clock, f"/webhooks/simulator/{account}", f"msg_slow_{n}", body)
    reliability.flush(auto)
    chosen = reliability.refresh(auto)
    assert chosen[account].seconds == pytest.approx(40, rel=0.3)
    registered = client.post(
        "/v1/payments",
        json={
            "merchant_reference": "order-own-1",
            "gateway": "simulator",
            "amount": 1000,
            "currency": "EUR",
            "gateway_payment_id": "sim_registered_own",
            "gateway_account": account,
        },
        headers=merchant.headers,
    )
    assert registered.status_code == 201, registered.json
    timeline = client.get(
        f"/v1/payments/{registered.json['id']}/events", headers=merchant.headers
    ).json["data"]
    assert timeline[0]["detail"]["first_delay_s"] == pytest.approx(40, rel=0.3)
    assert timeline[0]["detail"]["first_delay_source"] == "observed"
