"""The Razorpay adapter against a loopback Razorpay: payments, orders, errors, webhooks."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from support.app import MerchantAuth, make_settings
from support.clock import FakeClock
from support.fakes.razorpay_server import KEY_ID, KEY_SECRET, WEBHOOK_SECRET, RazorpayFake

from reconciler.adapters.gateways.base import (
    AuthError,
    CreateRequest,
    InvalidSignature,
    NotFoundError,
    RequestRejected,
    TransientError,
)
from reconciler.adapters.gateways.razorpay import RazorpayGateway
from reconciler.adapters.gateways.transport import HttpClient
from reconciler.bootstrap import Context, bootstrap
from reconciler.config import GatewayConfig
from reconciler.domain.status import Status
from reconciler.services.sweep import Sweeper


@pytest.fixture
def fake() -> Iterator[RazorpayFake]:
    server = RazorpayFake()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http() -> Iterator[HttpClient]:
    with HttpClient() as session:
        yield session


def make_gateway(
    fake: RazorpayFake,
    http: HttpClient,
    *,
    key_secret: str = KEY_SECRET,
    read_timeout: float = 5.0,
) -> RazorpayGateway:
    config = GatewayConfig(
        "razorpay",
        api_base=fake.url,
        api_key=KEY_ID,
        api_secret=key_secret,
        webhook_secrets=(WEBHOOK_SECRET, "rzp_webhook_secret_previous"),
    )
    return RazorpayGateway(
        config, session=http, timeout=(2.0, read_timeout), create_timeout=(2.0, read_timeout)
    )


@pytest.fixture
def gateway(fake: RazorpayFake, http: HttpClient) -> RazorpayGateway:
    return make_gateway(fake, http)


def order(reference: str = "order-1042", key: str = "idem-1") -> CreateRequest:
    return CreateRequest(
        amount=49900, currency="inr", merchant_reference=reference, idempotency_key=key
    )


@pytest.mark.parametrize(
    ("gateway_status", "status"),
    [
        ("created", Status.PENDING),
        ("authorized", Status.PENDING),  # authorised, not captured: no money moved yet
        ("captured", Status.SUCCEEDED),
        ("refunded", Status.SUCCEEDED),  # it was captured; the refund is in the detail
        ("failed", Status.FAILED),
    ],
)
def test_fetch_maps_each_payment_status(
    fake: RazorpayFake, gateway: RazorpayGateway, gateway_status: str, status: Status
) -> None:
    payment_id = fake.add_payment()["id"]
    fake.set_payment_status(payment_id, gateway_status)
    payment = gateway.fetch_payment(payment_id)
    assert payment.gateway_payment_id == payment_id
    assert (payment.gateway_status, payment.status) == (gateway_status, status)
    assert payment.occurred_at is None


def test_a_refunded_payment_records_the_refund(
    fake: RazorpayFake, gateway: RazorpayGateway
) -> None:
    payment_id = fake.add_payment(amount=49900, status="captured")["id"]
    fake.set_payment_status(payment_id, "refunded")
    detail = gateway.fetch_payment(payment_id).detail
    assert (detail["amount_refunded"], detail["refund_status"]) == (49900, "full")


def test_a_failed_payment_records_the_reason(fake: RazorpayFake, gateway: RazorpayGateway) -> None:
    payment_id = fake.add_payment()["id"]
    fake.set_payment_status(payment_id, "failed")
    detail = gateway.fetch_payment(payment_id).detail
    assert detail["error_reason"] == "incorrect_otp"


def test_create_makes_an_order_tracked_by_its_order_id(
    fake: RazorpayFake, gateway: RazorpayGateway
) -> None:
    payment = gateway.create_payment(order())
    assert payment.gateway_payment_id.startswith("order_")
    assert (payment.gateway_status, payment.status) == ("created", Status.PENDING)
    stored = fake.orders[payment.gateway_payment_id]
    assert (stored["amount"], stored["currency"], stored["receipt"]) == (49900, "INR", "order-1042")
    assert stored["notes"]["idempotency_key"] == "idem-1"


def test_create_retried_with_the_same_key_reuses_the_order(
    fake: RazorpayFake, gateway: RazorpayGateway
) -> None:
    first = gateway.create_payment(order())
    again = gateway.create_payment(order())
    assert again.gateway_payment_id == first.gateway_payment_id
    assert len(fake.orders) == 1
    assert fake.calls("POST", "/v1/orders") == 1


def test_create_after_a_lost_answer_finds_the_order_the_first_attempt_made(
    fake: RazorpayFake, http: HttpClient
) -> None:
    slow = make_gateway(fake, http, read_timeout=0.2)
    fake.delay_s, fake.delay_only = 0.5, ("POST", "/v1/orders")
    with pytest.raises(TransientError):  # the order is created, but its answer comes too late
        slow.create_payment(order())
    fake.delay_s = 0.0
    assert len(fake.orders) == 1
    payment = make_gateway(fake, http).create_payment(order())
    assert len(fake.orders) == 1
    assert payment.gateway_payment_id in fake.orders


def test_another_payment_with_the_same_receipt_gets_its_own_order(
    fake: RazorpayFake, gateway: RazorpayGateway
) -> None:
    # Two merchants may use the same reference: the idempotency key tells them apart.
    first = gateway.create_payment(order(key="merchant-a"))
    second = gateway.create_payment(order(key="merchant-b"))
    assert first.gateway_payment_id != second.gateway_payment_id


def test_a_long_reference_is_cut_to_razorpays_receipt_limit(
    fake: RazorpayFake, gateway: RazorpayGateway
) -> None:
    reference = "r" * 64
    payment = gateway.create_payment(order(reference=reference))
    assert fake.orders[payment.gateway_payment_id]["receipt"] == reference[:40]
    assert gateway.create_payment(order(reference=reference)) == payment


@pytest.mark.parametrize(
    ("order_status", "status"),
    [("created", Status.PENDING), ("attempted", Status.PENDING), ("paid", Status.SUCCEEDED)],
)
def test_fetching_an_order_id_maps_the_order_status(
    fake: RazorpayFake, gateway: RazorpayGateway, order_status: str, status: Status
) -> None:
    order_id = gateway.create_payment(order()).gateway_payment_id
    fake.orders[order_id]["status"] = order_status
    payment = gateway.fetch_payment(order_id)
    assert (payment.gateway_payment_id, payment.gateway_status) == (order_id, order_status)
    assert payment.status is status
    assert fake.calls("GET", f"/v1/orders/{order_id}") == 1


def test_a_paid_order_reads_as_succeeded(fake: RazorpayFake, gateway: RazorpayGateway) -> None:
    order_id = gateway.create_payment(order()).gateway_payment_id
    fake.pay_order(order_id)
    payment = gateway.fetch_payment(order_id)
    assert payment.status is Status.SUCCEEDED
    assert payment.detail["amount_paid"] == 49900


def test_a_wrong_key_secret_is_an_auth_error(fake: RazorpayFake, http: HttpClient) -> None:
    gateway = make_gateway(fake, http, key_secret="wrong")
    payment_id = fake.add_payment()["id"]
    with pytest.raises(AuthError):
        gateway.fetch_payment(payment_id)


@pytest.mark.parametrize("unknown", ["pay_DoesNotExist01", "order_DoesNotExist1"])
def test_an_unknown_id_is_not_found_although_razorpay_answers_400(
    gateway: RazorpayGateway, unknown: str
) -> None:
    with pytest.raises(NotFoundError):
        gateway.fetch_payment(unknown)


def test_an_invalid_order_is_rejected(gateway: RazorpayGateway) -> None:
    with pytest.raises(RequestRejected, match="amount"):
        gateway.create_payment(
            CreateRequest(amount=1, currency="INR", merchant_reference="r", idempotency_key="k")
        )


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_rate_limits_and_server_errors_are_transient(
    fake: RazorpayFake, gateway: RazorpayGateway, status: int
) -> None:
    payment_id = fake.add_payment()["id"]
    fake.fail_next(status)
    with pytest.raises(TransientError):
        gateway.fetch_payment(payment_id)
    assert gateway.fetch_payment(payment_id).gateway_payment_id == payment_id


def test_a_server_error_while_looking_for_the_order_creates_nothing(
    fake: RazorpayFake, gateway: RazorpayGateway
) -> None:
    fake.fail_next(503)
    with pytest.raises(TransientError):
        gateway.create_payment(order())
    assert fake.orders == {}


def test_an_answer_slower_than_the_read_timeout_is_transient(
    fake: RazorpayFake, http: HttpClient
) -> None:
    gateway = make_gateway(fake, http, read_timeout=0.2)
    payment_id = fake.add_payment()["id"]
    fake.delay_s = 2.0
    with pytest.raises(TransientError, match="timeout"):
        gateway.fetch_payment(payment_id)


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ("payment.authorized", Status.PENDING),
        ("payment.captured", Status.SUCCEEDED),
        ("payment.failed", Status.FAILED),
    ],
)
def test_a_payment_webhook_from_the_fake_verifies_and_reports(
    fake: RazorpayFake, gateway: RazorpayGateway, event: str, status: Status
) -> None:
    payment_id = fake.add_payment()["id"]
    fake.set_payment_status(payment_id, event.removeprefix("payment."))
    headers, body = fake.webhook(event, payment_id=payment_id, created_at=1_790_000_000)
    parsed = gateway.parse_webhook(headers, body, datetime.now(UTC))
    assert parsed.event_id == headers["x-razorpay-event-id"]
    assert parsed.gateway_payment_id == payment_id
    assert parsed.report is not None
    assert parsed.report.status is status
    assert parsed.report.occurred_at == datetime.fromtimestamp(1_790_000_000, UTC)


def test_order_paid_reports_on_the_order_id(fake: RazorpayFake, gateway: RazorpayGateway) -> None:
    order_id = gateway.create_payment(order()).gateway_payment_id
    payment_id = fake.pay_order(order_id)["id"]
    headers, body = fake.webhook("order.paid", payment_id=payment_id, order_id=order_id)
    parsed = gateway.parse_webhook(headers, body, datetime.now(UTC))
    assert parsed.gateway_payment_id == order_id
    assert parsed.report is not None
    assert parsed.report.status is Status.SUCCEEDED


def test_a_webhook_signed_with_another_secret_is_rejected(
    fake: RazorpayFake, gateway: RazorpayGateway
) -> None:
    payment_id = fake.add_payment(status="captured")["id"]
    headers, body = fake.webhook("payment.captured", payment_id=payment_id, secret="other")
    with pytest.raises(InvalidSignature):
        gateway.parse_webhook(headers, body, datetime.now(UTC))


def test_a_webhook_signed_with_the_previous_secret_verifies(
    fake: RazorpayFake, gateway: RazorpayGateway
) -> None:
    payment_id = fake.add_payment(status="captured")["id"]
    headers, body = fake.webhook(
        "payment.captured", payment_id=payment_id, secret="rzp_webhook_secret_previous"
    )
    assert gateway.parse_webhook(headers, body, datetime.now(UTC)).report is not None


# --- the whole hybrid loop through the service ---------------------------------------------


@pytest.fixture
def ctx(db_url: str, fake: RazorpayFake, clock: FakeClock) -> Iterator[Context]:
    """The service wired to the loopback Razorpay (the conftest `client`/`merchant` use it)."""
    settings = make_settings(
        db_url,
        razorpay_api_base=fake.url,
        razorpay_key_id=KEY_ID,
        razorpay_key_secret=KEY_SECRET,
        razorpay_webhook_secret=WEBHOOK_SECRET,
    )
    context = bootstrap(settings, clock=clock, rand=random.Random(1).random)
    yield context
    context.close()


def register(
    client: FlaskClient, merchant: MerchantAuth, reference: str, gateway_id: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "merchant_reference": reference,
        "gateway": "razorpay",
        "amount": 49900,
        "currency": "INR",
    }
    if gateway_id is not None:
        body["gateway_payment_id"] = gateway_id
    response = client.post("/v1/payments", json=body, headers=merchant.headers)
    assert response.status_code == 201, response.json
    return dict(response.json)


def sweep(ctx: Context) -> None:
    sweeper = Sweeper(ctx)
    try:
        sweeper.sweep_once()
    finally:
        sweeper.close()


def test_webhooks_settle_payments_and_the_sweep_fills_in_a_lost_one(
    fake: RazorpayFake,
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    clock: FakeClock,
) -> None:
    heard = fake.add_payment(status="authorized")["id"]
    lost = fake.add_payment(status="authorized")["id"]
    heard_id = register(client, merchant, "order-heard", heard)["id"]
    lost_id = register(client, merchant, "order-lost", lost)["id"]

    fake.set_payment_status(heard, "captured")
    forged_headers, forged_body = fake.webhook("payment.captured", payment_id=heard, secret="x")
    forged = client.post("/webhooks/razorpay", data=forged_body, headers=forged_headers)
    assert forged.status_code == 401
    assert client.get(f"/v1/payments/{heard_id}", headers=merchant.headers).json["status"] == (
        "pending"
    )

    headers, body = fake.webhook(
        "payment.captured", payment_id=heard, created_at=int(clock.now.timestamp())
    )
    delivered = client.post("/webhooks/razorpay", data=body, headers=headers)
    assert delivered.status_code == 200, delivered.json
    payment = client.get(f"/v1/payments/{heard_id}", headers=merchant.headers).json
    assert (payment["status"], payment["gateway_status"]) == ("succeeded", "captured")
    assert (payment["status_source"], payment["sync"]["state"]) == ("webhook", "settled")

    # The second payment fails and its webhook is lost: the sweep finds out by polling.
    fake.set_payment_status(lost, "failed")
    clock.advance(31)
    sweep(ctx)
    payment = client.get(f"/v1/payments/{lost_id}", headers=merchant.headers).json
    assert (payment["status"], payment["gateway_status"]) == ("failed", "failed")
    assert payment["status_source"] == "poll"
    assert fake.calls("GET", f"/v1/payments/{lost}") == 1
    assert fake.calls("GET", f"/v1/payments/{heard}") == 0  # settled: not polled


def test_a_payment_created_through_the_service_is_an_order_settled_by_order_paid(
    fake: RazorpayFake,
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    clock: FakeClock,
) -> None:
    created = register(client, merchant, "order-new", None)
    order_id = created["gateway_payment_id"]
    assert order_id in fake.orders
    assert (created["status"], created["gateway_status"]) == ("pending", "created")

    captured = fake.pay_order(order_id)["id"]
    headers, body = fake.webhook(
        "order.paid",
        payment_id=captured,
        order_id=order_id,
        created_at=int(clock.now.timestamp()),
    )
    assert client.post("/webhooks/razorpay", data=body, headers=headers).status_code == 200
    payment = client.get(f"/v1/payments/{created['id']}", headers=merchant.headers).json
    assert (payment["status"], payment["gateway_status"]) == ("succeeded", "paid")
