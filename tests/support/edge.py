"""An app with all three gateways taking webhooks, and each gateway's signature, made here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from reconciler.bootstrap import Context, bootstrap
from reconciler.entrypoints.app import create_app
from reconciler.services.merchants import create_merchant
from support.app import SIM_SECRET, make_settings
from support.clock import FakeClock

STRIPE_SECRET = "whsec_edge_stripe_test"  # test-only
RAZORPAY_SECRET = "rzp_edge_webhook_test"  # test-only
CLOSED_PORT = "http://127.0.0.1:9"  # the gateways' APIs are never reached in these tests

# The gateway payment ids registered by `edge_app`, one per gateway.
TRACKED = {"simulator": "sim_edge_1", "stripe": "pi_edge_1", "razorpay": "pay_edge_1"}


@contextmanager
def edge_context(db_url: str, clock: FakeClock, **overrides: Any) -> Iterator[Context]:
    settings = make_settings(
        db_url,
        CLOSED_PORT,
        stripe_api_base=CLOSED_PORT,
        stripe_api_key="sk_test_edge",
        stripe_webhook_secret=STRIPE_SECRET,
        razorpay_api_base=CLOSED_PORT,
        razorpay_key_id="rzp_test_edge",
        razorpay_key_secret="edge",
        razorpay_webhook_secret=RAZORPAY_SECRET,
        **overrides,
    )
    ctx = bootstrap(settings, clock=clock, rand=random.Random(1).random)
    try:
        yield ctx
    finally:
        ctx.close()


def edge_app(ctx: Context) -> tuple[Flask, dict[str, str]]:
    """Build the app and register one payment per gateway; return it and the auth header."""
    app = create_app(ctx=ctx)
    _, key = create_merchant(ctx, "edge")
    headers = {"Authorization": f"Bearer {key}"}
    client = app.test_client()
    for gateway, gid in TRACKED.items():
        response = client.post(
            "/v1/payments",
            json={
                "merchant_reference": f"edge-{gateway}",
                "gateway": gateway,
                "amount": 1000,
                "currency": "EUR",
                "gateway_payment_id": gid,
            },
            headers=headers,
        )
        assert response.status_code == 201, response.json
    return app, headers


def simulator_headers(msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    key = base64.b64decode(SIM_SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def stripe_headers(timestamp: int, body: bytes) -> dict[str, str]:
    mac = hmac.new(STRIPE_SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return {"Stripe-Signature": f"t={timestamp},v1={mac.hexdigest()}"}


def razorpay_headers(event_id: str, body: bytes) -> dict[str, str]:
    mac = hmac.new(RAZORPAY_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Razorpay-Signature": mac, "x-razorpay-event-id": event_id}


def signed(gateway: str, body: bytes, timestamp: int, event_id: str) -> dict[str, str]:
    """Headers that sign `body` correctly for `gateway`."""
    if gateway == "simulator":
        return simulator_headers(event_id, timestamp, body)
    if gateway == "stripe":
        return stripe_headers(timestamp, body)
    return razorpay_headers(event_id, body)


def post(
    client: FlaskClient, gateway: str, body: bytes, headers: dict[str, str]
) -> Any:  # the test response
    return client.post(
        f"/webhooks/{gateway}",
        data=body,
        headers={**headers, "Content-Type": "application/json"},
    )
