"""A merchant's own Razorpay account: orders created with its keys, webhooks on its path."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from support.app import MerchantAuth, make_settings
from support.clock import FakeClock
from support.fakes.razorpay_server import KEY_ID, KEY_SECRET, RazorpayFake

from reconciler.bootstrap import Context, bootstrap

ADMIN = {"Authorization": "Bearer admin-token-for-razorpay-accounts-tests"}
ACCOUNT_SECRET = "rzp-webhook-secret-of-the-account"


@pytest.fixture
def fake() -> Iterator[RazorpayFake]:
    server = RazorpayFake()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ctx(db_url: str, fake: RazorpayFake, clock: FakeClock) -> Iterator[Context]:
    """Razorpay reachable, no environment credentials: only the merchant's own account."""
    settings = make_settings(
        db_url, razorpay_api_base=fake.url, admin_token=ADMIN["Authorization"][7:]
    )
    context = bootstrap(settings, clock=clock, rand=random.Random(2).random)
    yield context
    context.close()


def test_an_order_on_the_merchants_account_settles_by_its_own_webhook(
    fake: RazorpayFake, client: FlaskClient, merchant: MerchantAuth
) -> None:
    added = client.post(
        "/admin/gateway_accounts",
        json={
            "merchant_id": merchant.id,
            "gateway": "razorpay",
            "credentials": {"key_id": KEY_ID, "key_secret": KEY_SECRET},
            "webhook_secret": ACCOUNT_SECRET,
        },
        headers=ADMIN,
    )
    assert added.status_code == 201, added.json
    account = added.json
    created = client.post(
        "/v1/payments",
        json={
            "merchant_reference": "order-rzp-1",
            "gateway": "razorpay",
            "amount": 49900,
            "currency": "INR",
        },
        headers=merchant.headers,
    )
    assert created.status_code == 201, created.json
    payment = created.json
    assert payment["gateway_account"] == account["id"]
    order_id = payment["gateway_payment_id"]
    assert fake.orders[order_id]["notes"]["reconciler_merchant"] == merchant.id
    fake.pay_order(order_id)

    foreign_headers, body = fake.webhook("order.paid", order_id=order_id)  # the fake's secret
    assert client.post(account["webhook_path"], data=body, headers=foreign_headers).status_code == (
        401
    )
    headers, body = fake.webhook("order.paid", order_id=order_id, secret=ACCOUNT_SECRET)
    assert client.post("/webhooks/razorpay", data=body, headers=headers).status_code == 404
    assert client.post(account["webhook_path"], data=body, headers=headers).status_code == 200
    after = client.get(f"/v1/payments/{payment['id']}", headers=merchant.headers).json
    assert (after["status"], after["sync"]["state"]) == ("succeeded", "settled")
