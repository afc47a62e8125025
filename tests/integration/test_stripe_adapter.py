"""The Stripe adapter against a loopback Stripe: fetch, create, mapping, errors, webhooks."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient
from support.app import MerchantAuth, make_settings
from support.clock import FakeClock
from support.fakes.stripe_server import SECRET_KEY, WEBHOOK_SECRET, StripeFake

from reconciler.adapters.gateways.base import (
    AuthError,
    CreateRequest,
    InvalidSignature,
    NotFoundError,
    RequestRejected,
    TransientError,
)
from reconciler.adapters.gateways.stripe import StripeGateway
from reconciler.adapters.gateways.transport import HttpClient
from reconciler.bootstrap import Context, bootstrap
from reconciler.config import GatewayConfig
from reconciler.domain.status import Status
from reconciler.services.sweep import Sweeper


@pytest.fixture
def fake() -> Iterator[StripeFake]:
    server = StripeFake()
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
    fake: StripeFake,
    http: HttpClient,
    *,
    key: str = SECRET_KEY,
    read_timeout: float = 5.0,
) -> StripeGateway:
    config = GatewayConfig(
        "stripe", api_base=fake.url, api_key=key, webhook_secrets=(WEBHOOK_SECRET,)
    )
    return StripeGateway(
        config, session=http, timeout=(2.0, read_timeout), create_timeout=(2.0, read_timeout)
    )


@pytest.fixture
def gateway(fake: StripeFake, http: HttpClient) -> StripeGateway:
    return make_gateway(fake, http)


def order(reference: str = "order-1042", key: str = "idem-1") -> CreateRequest:
    return CreateRequest(
        amount=49900, currency="USD", merchant_reference=reference, idempotency_key=key
    )


@pytest.mark.parametrize(
    ("gateway_status", "status"),
    [
        ("requires_payment_method", Status.PENDING),
        ("requires_confirmation", Status.PENDING),
        ("requires_action", Status.PENDING),
        ("processing", Status.PENDING),
        ("requires_capture", Status.PENDING),  # authorised, not captured: no money yet
        ("succeeded", Status.SUCCEEDED),
        ("canceled", Status.CANCELED),
        ("some_future_status", Status.PENDING),  # unknown: keep polling, never guess terminal
    ],
)
def test_fetch_maps_each_intent_status(
    fake: StripeFake, gateway: StripeGateway, gateway_status: str, status: Status
) -> None:
    intent = fake.add_intent(status=gateway_status)
    payment = gateway.fetch_payment(intent["id"])
    assert payment.gateway_payment_id == intent["id"]
    assert (payment.gateway_status, payment.status) == (gateway_status, status)
    assert payment.occurred_at is None  # an intent carries no status-change time


def test_fetch_of_a_declined_attempt_stays_pending_with_the_decline_in_detail(
    fake: StripeFake, gateway: StripeGateway
) -> None:
    intent = fake.add_intent(status="requires_confirmation")
    decline = {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds"}
    fake.set_status(intent["id"], "requires_payment_method", last_payment_error=decline)
    payment = gateway.fetch_payment(intent["id"])
    assert payment.status is Status.PENDING
    assert payment.detail == {"last_payment_error": decline}


def test_create_posts_a_form_with_lowercase_currency_and_the_reference(
    fake: StripeFake, gateway: StripeGateway
) -> None:
    payment = gateway.create_payment(order())
    intent = fake.intents[payment.gateway_payment_id]
    assert payment.gateway_payment_id.startswith("pi_")
    assert (payment.status, payment.gateway_status) == (Status.PENDING, "requires_payment_method")
    assert (intent["amount"], intent["currency"]) == (49900, "usd")
    assert intent["metadata"] == {"merchant_reference": "order-1042"}


def test_create_retried_with_the_same_idempotency_key_returns_the_same_intent(
    fake: StripeFake, gateway: StripeGateway
) -> None:
    first = gateway.create_payment(order())
    again = gateway.create_payment(order())
    assert again.gateway_payment_id == first.gateway_payment_id
    assert len(fake.intents) == 1
    assert fake.calls("POST", "/v1/payment_intents") == 2


def test_create_with_another_key_creates_another_intent(
    fake: StripeFake, gateway: StripeGateway
) -> None:
    first = gateway.create_payment(order(key="idem-1"))
    second = gateway.create_payment(order(key="idem-2"))
    assert first.gateway_payment_id != second.gateway_payment_id


def test_create_reusing_a_key_with_other_parameters_is_rejected(
    gateway: StripeGateway,
) -> None:
    gateway.create_payment(order(reference="order-1"))
    with pytest.raises(RequestRejected, match="idempotency_error"):
        gateway.create_payment(order(reference="order-2"))


def test_a_wrong_secret_key_is_an_auth_error(fake: StripeFake, http: HttpClient) -> None:
    gateway = make_gateway(fake, http, key="sk_test_wrong")
    intent = fake.add_intent()
    with pytest.raises(AuthError, match="Invalid API Key"):
        gateway.fetch_payment(intent["id"])


def test_an_unknown_intent_is_not_found(gateway: StripeGateway) -> None:
    with pytest.raises(NotFoundError, match="resource_missing"):
        gateway.fetch_payment("pi_doesnotexist")


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_rate_limits_and_server_errors_are_transient(
    fake: StripeFake, gateway: StripeGateway, status: int
) -> None:
    intent = fake.add_intent()
    fake.fail_next(status)
    with pytest.raises(TransientError):
        gateway.fetch_payment(intent["id"])
    assert gateway.fetch_payment(intent["id"]).gateway_payment_id == intent["id"]


def test_a_429_retry_after_is_passed_on(fake: StripeFake, gateway: StripeGateway) -> None:
    intent = fake.add_intent()
    fake.fail_next(429, headers={"Retry-After": "7"})
    with pytest.raises(TransientError) as caught:
        gateway.fetch_payment(intent["id"])
    assert caught.value.retry_after == 7


def test_should_retry_true_makes_a_409_transient(fake: StripeFake, gateway: StripeGateway) -> None:
    # Another request with the same Idempotency-Key is still in flight: try again later.
    fake.fail_next(409, headers={"Stripe-Should-Retry": "true"})
    with pytest.raises(TransientError, match="idempotency_key_in_use"):
        gateway.create_payment(order())


@pytest.mark.parametrize("status", [400, 409, 500])
def test_should_retry_false_is_a_rejection(
    fake: StripeFake, gateway: StripeGateway, status: int
) -> None:
    # Stripe saved this answer under the Idempotency-Key: a retry would only replay it.
    fake.fail_next(status, headers={"Stripe-Should-Retry": "false"})
    with pytest.raises(RequestRejected):
        gateway.create_payment(order())


def test_a_400_without_advice_is_a_rejection(fake: StripeFake, gateway: StripeGateway) -> None:
    fake.fail_next(400)
    with pytest.raises(RequestRejected):
        gateway.create_payment(order())


def test_an_answer_slower_than_the_read_timeout_is_transient(
    fake: StripeFake, http: HttpClient
) -> None:
    gateway = make_gateway(fake, http, read_timeout=0.2)
    intent = fake.add_intent()
    fake.delay_s = 2.0
    with pytest.raises(TransientError, match="timeout"):
        gateway.fetch_payment(intent["id"])


def test_a_refused_connection_is_transient(http: HttpClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = GatewayConfig("stripe", api_base=f"http://127.0.0.1:{port}", api_key=SECRET_KEY)
    gateway = StripeGateway(config, session=http, timeout=(1, 1), create_timeout=(1, 1))
    with pytest.raises(TransientError, match="connection"):
        gateway.fetch_payment("pi_1")


def test_a_webhook_built_by_the_fake_verifies_and_reports(
    fake: StripeFake, gateway: StripeGateway
) -> None:
    intent = fake.add_intent(status="processing")
    fake.set_status(intent["id"], "succeeded")
    event = fake.event("payment_intent.succeeded", intent["id"])
    headers, body = fake.signed(event)
    parsed = gateway.parse_webhook(headers, body, datetime.now(UTC))
    assert (parsed.event_id, parsed.gateway_payment_id) == (event["id"], intent["id"])
    assert parsed.report is not None
    assert parsed.report.status is Status.SUCCEEDED
    assert parsed.report.occurred_at == datetime.fromtimestamp(event["created"], UTC)


def test_a_webhook_signed_with_another_secret_is_rejected(
    fake: StripeFake, gateway: StripeGateway
) -> None:
    intent = fake.add_intent()
    headers, body = fake.signed(
        fake.event("payment_intent.canceled", intent["id"]), secrets_=("whsec_other",)
    )
    with pytest.raises(InvalidSignature):
        gateway.parse_webhook(headers, body, datetime.now(UTC))


# --- the whole hybrid loop through the service ---------------------------------------------


@pytest.fixture
def ctx(db_url: str, fake: StripeFake, clock: FakeClock) -> Iterator[Context]:
    """The service wired to the loopback Stripe (the conftest `client`/`merchant` use it)."""
    settings = make_settings(
        db_url,
        stripe_api_base=fake.url,
        stripe_api_key=SECRET_KEY,
        stripe_webhook_secret=f"whsec_retired,{WEBHOOK_SECRET}",
    )
    context = bootstrap(settings, clock=clock, rand=random.Random(1).random)
    yield context
    context.close()


def register(client: FlaskClient, merchant: MerchantAuth, reference: str, intent_id: str) -> str:
    response = client.post(
        "/v1/payments",
        json={
            "merchant_reference": reference,
            "gateway": "stripe",
            "amount": 4990,
            "currency": "USD",
            "gateway_payment_id": intent_id,
        },
        headers=merchant.headers,
    )
    assert response.status_code == 201, response.json
    return str(response.json["id"])


def test_webhooks_settle_payments_and_the_sweep_fills_in_a_lost_one(
    fake: StripeFake,
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    clock: FakeClock,
) -> None:
    heard = fake.add_intent(status="processing")
    lost = fake.add_intent(status="processing")
    heard_id = register(client, merchant, "order-heard", heard["id"])
    lost_id = register(client, merchant, "order-lost", lost["id"])

    fake.set_status(heard["id"], "succeeded")
    now = int(clock.now.timestamp())
    event = fake.event("payment_intent.succeeded", heard["id"], created=now)

    forged_headers, forged_body = fake.signed(event, secrets_=("whsec_forged",), timestamp=now)
    forged = client.post("/webhooks/stripe", data=forged_body, headers=forged_headers)
    assert forged.status_code == 401
    assert client.get(f"/v1/payments/{heard_id}", headers=merchant.headers).json["status"] == (
        "pending"
    )

    headers, body = fake.signed(event, timestamp=now)
    delivered = client.post("/webhooks/stripe", data=body, headers=headers)
    assert delivered.status_code == 200, delivered.json
    payment = client.get(f"/v1/payments/{heard_id}", headers=merchant.headers).json
    assert (payment["status"], payment["gateway_status"]) == ("succeeded", "succeeded")
    assert (payment["status_source"], payment["sync"]["state"]) == ("webhook", "settled")

    # The second payment's webhook never comes: the sweep polls it once its grace is over.
    fake.set_status(lost["id"], "succeeded")
    clock.advance(31)
    sweeper = Sweeper(ctx)
    try:
        sweeper.sweep_once()
    finally:
        sweeper.close()
    payment = client.get(f"/v1/payments/{lost_id}", headers=merchant.headers).json
    assert (payment["status"], payment["status_source"]) == ("succeeded", "poll")
    assert fake.calls("GET", f"/v1/payment_intents/{lost['id']}") == 1
    assert fake.calls("GET", f"/v1/payment_intents/{heard['id']}") == 0  # settled: not polled


def test_rejected_credentials_open_the_breaker_and_cost_the_payment_nothing(
    db_url: str, fake: StripeFake, clock: FakeClock
) -> None:
    from reconciler.entrypoints.app import create_app
    from reconciler.services.merchants import create_merchant

    settings = make_settings(db_url, stripe_api_base=fake.url, stripe_api_key="sk_test_revoked")
    context = bootstrap(settings, clock=clock, rand=random.Random(1).random)
    sweeper = Sweeper(context)
    try:
        client = create_app(ctx=context).test_client()
        _, key = create_merchant(context, "acme")
        headers = {"Authorization": f"Bearer {key}"}
        intent = fake.add_intent(amount=100, currency="usd", status="processing")
        tracked = client.post(
            "/v1/payments",
            json={
                "merchant_reference": "tracked",
                "gateway": "stripe",
                "amount": 100,
                "currency": "USD",
                "gateway_payment_id": intent["id"],
            },
            headers=headers,
        ).json
        created = client.post(
            "/v1/payments",
            json={
                "merchant_reference": "new",
                "gateway": "stripe",
                "amount": 100,
                "currency": "USD",
            },
            headers=headers,
        ).json
        assert created["gateway_payment_id"] is None
        assert created["sync"]["last_error"].startswith("create:")
        assert created["sync"]["poll_attempts"] == 0
        clock.advance(30)
        sweeper.sweep_once(clock.now)
        assert sweeper.breakers["stripe"].state.value == "open"
        polled = client.get(f"/v1/payments/{tracked['id']}", headers=headers).json
        assert polled["sync"]["poll_attempts"] == 0
        assert polled["sync"]["last_error"].startswith("auth:")
        assert polled["status"] == "pending"
    finally:
        sweeper.close()
        context.close()


def test_a_declined_attempt_stays_pending_and_the_decline_is_in_the_timeline(
    fake: StripeFake, ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    intent = fake.add_intent(status="requires_confirmation")
    payment_id = register(client, merchant, "order-declined", intent["id"])
    decline = {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds"}
    fake.set_status(intent["id"], "requires_payment_method", last_payment_error=decline)
    now = int(clock.now.timestamp())
    event = fake.event("payment_intent.payment_failed", intent["id"], created=now)
    headers, body = fake.signed(event, timestamp=now)
    assert client.post("/webhooks/stripe", data=body, headers=headers).status_code == 200
    payment = client.get(f"/v1/payments/{payment_id}", headers=merchant.headers).json
    assert (payment["status"], payment["gateway_status"]) == ("pending", "requires_payment_method")
    timeline = client.get(f"/v1/payments/{payment_id}/events", headers=merchant.headers).json
    (declined,) = [e for e in timeline["data"] if e["source"] == "webhook"]
    assert declined["detail"]["event_type"] == "payment_intent.payment_failed"
    assert declined["detail"]["last_payment_error"]["code"] == "card_declined"
    # The next poll sees the same decline and says why the payment is still pending.
    clock.advance(31)
    sweeper = Sweeper(ctx)
    try:
        sweeper.sweep_once()
    finally:
        sweeper.close()
    payment = client.get(f"/v1/payments/{payment_id}", headers=merchant.headers).json
    assert payment["status"] == "pending"
    assert payment["sync"]["last_error"] == "attempt failed: card_declined: insufficient_funds"
