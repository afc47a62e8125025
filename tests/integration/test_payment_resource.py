"""The notification payload's `data` and `GET /v1/payments/{id}` are the same resource.

The outbox renders it in services (no HTTP schema on the hot path); the API renders it
from its pydantic shape. This test fails when the two drift apart.
"""

from __future__ import annotations

from flask.testing import FlaskClient
from support.app import MerchantAuth, register_payment
from support.clock import FakeClock

from reconciler.adapters.models import Payment
from reconciler.bootstrap import Context
from reconciler.entrypoints.schemas import payment_resource as api_resource
from reconciler.services.resources import payment_resource


def test_the_outbox_renders_the_payment_exactly_as_the_api_shows_it(
    ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    payment_id = register_payment(client, merchant, "sim_pay_resource")
    shown = client.get(f"/v1/payments/{payment_id}", headers=merchant.headers).json
    with ctx.read() as session:
        row = session.get_one(Payment, payment_id)
        assert payment_resource(row) == api_resource(row) == shown
