"""Webhook verification for Stripe and Razorpay, signed here with hmac (no adapter helpers)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler.adapters.gateways.base import InvalidSignature, MalformedWebhook
from reconciler.adapters.gateways.razorpay import RazorpayGateway
from reconciler.adapters.gateways.stripe import StripeGateway
from reconciler.adapters.gateways.transport import HttpClient
from reconciler.config import GatewayConfig
from reconciler.domain.status import Status

NOW = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)
T = int(NOW.timestamp())
STRIPE_SECRET = "whsec_current"
STRIPE_OLD_SECRET = "whsec_previous"
RZP_SECRET = "rzp-secret-current"
RZP_OLD_SECRET = "rzp-secret-previous"


@pytest.fixture
def http() -> Iterator[HttpClient]:
    with HttpClient() as session:
        yield session


@pytest.fixture
def stripe(http: HttpClient) -> StripeGateway:
    config = GatewayConfig(
        "stripe", api_key="sk_test_x", webhook_secrets=(STRIPE_SECRET, STRIPE_OLD_SECRET)
    )
    return StripeGateway(config, session=http, timeout=(1, 1), create_timeout=(1, 1))


@pytest.fixture
def razorpay(http: HttpClient) -> RazorpayGateway:
    config = GatewayConfig(
        "razorpay",
        api_key="rzp_test_x",
        api_secret="s",
        webhook_secrets=(RZP_SECRET, RZP_OLD_SECRET),
    )
    return RazorpayGateway(config, session=http, timeout=(1, 1), create_timeout=(1, 1))


def stripe_event(event_type: str = "payment_intent.succeeded", **intent: Any) -> bytes:
    obj = {"id": "pi_123", "object": "payment_intent", "status": "succeeded", **intent}
    event = {
        "id": "evt_1",
        "object": "event",
        "type": event_type,
        "created": T - 5,
        "data": {"object": obj},
    }
    return json.dumps(event).encode()


def stripe_v1(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def stripe_headers(body: bytes, *secrets: str, t: int = T) -> dict[str, str]:
    sigs = ",".join(f"v1={stripe_v1(s, t, body)}" for s in secrets)
    return {"Stripe-Signature": f"t={t},{sigs}"}


# --- Stripe ------------------------------------------------------------------------------


def test_stripe_valid_signature_gives_a_report_at_the_event_time(stripe: StripeGateway) -> None:
    body = stripe_event()
    event = stripe.parse_webhook(stripe_headers(body, STRIPE_SECRET), body, NOW)
    assert event.event_id == "evt_1"
    assert event.event_type == "payment_intent.succeeded"
    assert event.gateway_payment_id == "pi_123"
    assert event.report is not None
    assert event.report.status is Status.SUCCEEDED
    assert event.report.gateway_status == "succeeded"
    assert event.report.occurred_at == datetime.fromtimestamp(T - 5, UTC)


def test_stripe_signature_with_the_previous_secret_passes_during_rotation(
    stripe: StripeGateway,
) -> None:
    body = stripe_event()
    event = stripe.parse_webhook(stripe_headers(body, STRIPE_OLD_SECRET), body, NOW)
    assert event.event_id == "evt_1"


def test_stripe_any_v1_may_match(stripe: StripeGateway) -> None:
    body = stripe_event()
    headers = stripe_headers(body, "whsec_unknown", STRIPE_SECRET)
    assert stripe.parse_webhook(headers, body, NOW).event_id == "evt_1"


def test_stripe_header_name_is_case_insensitive(stripe: StripeGateway) -> None:
    body = stripe_event()
    headers = {"stripe-signature": stripe_headers(body, STRIPE_SECRET)["Stripe-Signature"]}
    assert stripe.parse_webhook(headers, body, NOW).event_id == "evt_1"


def test_stripe_secret_is_used_whole_including_the_whsec_prefix(stripe: StripeGateway) -> None:
    body = stripe_event()
    headers = stripe_headers(body, STRIPE_SECRET.removeprefix("whsec_"))
    with pytest.raises(InvalidSignature):
        stripe.parse_webhook(headers, body, NOW)


def test_stripe_wrong_secret_is_rejected(stripe: StripeGateway) -> None:
    body = stripe_event()
    with pytest.raises(InvalidSignature):
        stripe.parse_webhook(stripe_headers(body, "whsec_attacker"), body, NOW)


def test_stripe_tampered_body_is_rejected(stripe: StripeGateway) -> None:
    body = stripe_event()
    headers = stripe_headers(body, STRIPE_SECRET)
    with pytest.raises(InvalidSignature):
        stripe.parse_webhook(headers, body.replace(b"succeeded", b"canceled"), NOW)


def test_stripe_only_a_v0_signature_is_malformed(stripe: StripeGateway) -> None:
    body = stripe_event()
    # v0 is Stripe's test-mode scheme; accepting it would allow a downgrade.
    headers = {"Stripe-Signature": f"t={T},v0={stripe_v1(STRIPE_SECRET, T, body)}"}
    with pytest.raises(MalformedWebhook):
        stripe.parse_webhook(headers, body, NOW)


@pytest.mark.parametrize(
    "offset",
    [
        -301,  # replayed an old delivery
        +301,  # a clock far ahead is no better
        -86400,
    ],
)
def test_stripe_timestamp_outside_tolerance_is_rejected(stripe: StripeGateway, offset: int) -> None:
    body = stripe_event()
    headers = stripe_headers(body, STRIPE_SECRET, t=T + offset)
    with pytest.raises(InvalidSignature, match="tolerance"):
        stripe.parse_webhook(headers, body, NOW)


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_stripe_timestamp_within_tolerance_passes(stripe: StripeGateway, offset: int) -> None:
    body = stripe_event()
    headers = stripe_headers(body, STRIPE_SECRET, t=T + offset)
    assert stripe.parse_webhook(headers, body, NOW).event_id == "evt_1"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "v1=abc",  # no timestamp
        f"t={T}",  # no signature
        f"t=yesterday,v1={'0' * 64}",
        f"t={T},v1=",
    ],
)
def test_stripe_missing_or_garbled_header_is_malformed(
    stripe: StripeGateway, header: str | None
) -> None:
    body = stripe_event()
    headers = {} if header is None else {"Stripe-Signature": header}
    with pytest.raises(MalformedWebhook):
        stripe.parse_webhook(headers, body, NOW)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"object": "payment_intent", "id": "pi_1", "status": "succeeded"}',
        b'{"object": "event", "id": "evt_1", "type": "x", "created": 1}',  # no data.object
        b'{"object": "event", "type": "x", "created": 1, "data": {"object": {}}}',
        b'{"object": "event", "id": "evt_1", "type": "payment_intent.succeeded",'
        b' "created": 1, "data": {"object": {"object": "payment_intent"}}}',
    ],
)
def test_stripe_signed_body_that_is_not_an_event_is_malformed(
    stripe: StripeGateway, body: bytes
) -> None:
    headers = stripe_headers(body, STRIPE_SECRET)
    with pytest.raises(MalformedWebhook):
        stripe.parse_webhook(headers, body, NOW)


def test_stripe_without_a_configured_secret_rejects_everything(http: HttpClient) -> None:
    gateway = StripeGateway(
        GatewayConfig("stripe", api_key="sk"), session=http, timeout=(1, 1), create_timeout=(1, 1)
    )
    body = stripe_event()
    with pytest.raises(InvalidSignature):
        gateway.parse_webhook(stripe_headers(body, STRIPE_SECRET), body, NOW)


@pytest.mark.parametrize(
    ("event_type", "intent_status", "status"),
    [
        ("payment_intent.succeeded", "succeeded", Status.SUCCEEDED),
        ("payment_intent.canceled", "canceled", Status.CANCELED),
        ("payment_intent.processing", "processing", Status.PENDING),
        ("payment_intent.requires_action", "requires_action", Status.PENDING),
        ("payment_intent.amount_capturable_updated", "requires_capture", Status.PENDING),
        # A decline is not final for an intent: the customer can retry with another card.
        ("payment_intent.payment_failed", "requires_payment_method", Status.PENDING),
    ],
)
def test_stripe_payment_intent_events_map_to_reports(
    stripe: StripeGateway, event_type: str, intent_status: str, status: Status
) -> None:
    body = stripe_event(event_type, status=intent_status)
    event = stripe.parse_webhook(stripe_headers(body, STRIPE_SECRET), body, NOW)
    assert event.report is not None
    assert (event.report.status, event.report.gateway_status) == (status, intent_status)


def test_stripe_failed_attempt_event_carries_the_decline_in_detail(stripe: StripeGateway) -> None:
    error = {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}
    body = stripe_event(
        "payment_intent.payment_failed",
        status="requires_payment_method",
        last_payment_error=error,
    )
    event = stripe.parse_webhook(stripe_headers(body, STRIPE_SECRET), body, NOW)
    assert event.detail == {
        "last_payment_error": error,
        # The key the sync state reads for `sync.last_error`.
        "attempt_error": "card_declined: Your card was declined.",
    }


def test_stripe_other_event_types_carry_no_report(stripe: StripeGateway) -> None:
    body = stripe_event("charge.succeeded", id="ch_1", object="charge")
    event = stripe.parse_webhook(stripe_headers(body, STRIPE_SECRET), body, NOW)
    assert (event.event_type, event.gateway_payment_id, event.report) == (
        "charge.succeeded",
        None,
        None,
    )


# --- Razorpay ----------------------------------------------------------------------------


def razorpay_body(event: str, **entities: dict[str, Any]) -> bytes:
    payload = {name: {"entity": entity} for name, entity in entities.items()}
    return json.dumps(
        {
            "entity": "event",
            "account_id": "acc_1",
            "event": event,
            "contains": list(payload),
            "payload": payload,
            "created_at": T - 7,
        }
    ).encode()


def razorpay_headers(body: bytes, secret: str, event_id: str = "evt_rzp_1") -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Razorpay-Signature": signature, "x-razorpay-event-id": event_id}


CAPTURED = {"id": "pay_1", "entity": "payment", "status": "captured", "order_id": "order_1"}


def test_razorpay_valid_signature_gives_a_report(razorpay: RazorpayGateway) -> None:
    body = razorpay_body("payment.captured", payment=CAPTURED)
    event = razorpay.parse_webhook(razorpay_headers(body, RZP_SECRET), body, NOW)
    assert event.event_id == "evt_rzp_1"
    assert event.gateway_payment_id == "pay_1"
    assert event.report is not None
    assert event.report.status is Status.SUCCEEDED
    assert event.report.occurred_at == datetime.fromtimestamp(T - 7, UTC)
    assert event.detail["order_id"] == "order_1"


def test_razorpay_previous_secret_passes_during_rotation(razorpay: RazorpayGateway) -> None:
    body = razorpay_body("payment.captured", payment=CAPTURED)
    event = razorpay.parse_webhook(razorpay_headers(body, RZP_OLD_SECRET), body, NOW)
    assert event.gateway_payment_id == "pay_1"


def test_razorpay_wrong_secret_is_rejected(razorpay: RazorpayGateway) -> None:
    body = razorpay_body("payment.captured", payment=CAPTURED)
    with pytest.raises(InvalidSignature):
        razorpay.parse_webhook(razorpay_headers(body, "attacker"), body, NOW)


def test_razorpay_tampered_body_is_rejected(razorpay: RazorpayGateway) -> None:
    body = razorpay_body("payment.failed", payment={**CAPTURED, "status": "failed"})
    headers = razorpay_headers(body, RZP_SECRET)
    with pytest.raises(InvalidSignature):
        razorpay.parse_webhook(headers, body.replace(b"failed", b"captured"), NOW)


def test_razorpay_has_no_replay_window_old_deliveries_verify(razorpay: RazorpayGateway) -> None:
    # No timestamp is signed: dedupe on the event id is the only replay protection.
    body = razorpay_body("payment.captured", payment=CAPTURED)
    later = NOW + timedelta(days=30)
    assert razorpay.parse_webhook(razorpay_headers(body, RZP_SECRET), body, later).report


def test_razorpay_missing_signature_header_is_malformed(razorpay: RazorpayGateway) -> None:
    body = razorpay_body("payment.captured", payment=CAPTURED)
    with pytest.raises(MalformedWebhook):
        razorpay.parse_webhook({"x-razorpay-event-id": "evt_1"}, body, NOW)


def test_razorpay_missing_event_id_is_malformed(razorpay: RazorpayGateway) -> None:
    body = razorpay_body("payment.captured", payment=CAPTURED)
    headers = razorpay_headers(body, RZP_SECRET)
    del headers["x-razorpay-event-id"]
    with pytest.raises(MalformedWebhook):
        razorpay.parse_webhook(headers, body, NOW)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"entity": "payment", "id": "pay_1"}',
        b'{"entity": "event", "event": "payment.captured", "payload": {}, "created_at": 1}',
        b'{"entity": "event", "event": "payment.captured", "payload": {"payment": {"entity":'
        b' {"id": "pay_1"}}}, "created_at": 1}',  # an entity without a status
    ],
)
def test_razorpay_signed_body_that_is_not_an_event_is_malformed(
    razorpay: RazorpayGateway, body: bytes
) -> None:
    with pytest.raises(MalformedWebhook):
        razorpay.parse_webhook(razorpay_headers(body, RZP_SECRET), body, NOW)


@pytest.mark.parametrize(
    ("event", "entities", "payment_id", "status"),
    [
        (
            "payment.authorized",
            {"payment": {**CAPTURED, "status": "authorized"}},
            "pay_1",
            "pending",
        ),
        ("payment.captured", {"payment": CAPTURED}, "pay_1", "succeeded"),
        ("payment.failed", {"payment": {**CAPTURED, "status": "failed"}}, "pay_1", "failed"),
        # order.paid reports on the order: the id a payment created through us is tracked by.
        (
            "order.paid",
            {"payment": CAPTURED, "order": {"id": "order_1", "entity": "order", "status": "paid"}},
            "order_1",
            "succeeded",
        ),
    ],
)
def test_razorpay_events_map_to_reports(
    razorpay: RazorpayGateway,
    event: str,
    entities: dict[str, dict[str, Any]],
    payment_id: str,
    status: str,
) -> None:
    body = razorpay_body(event, **entities)
    parsed = razorpay.parse_webhook(razorpay_headers(body, RZP_SECRET), body, NOW)
    assert parsed.event_type == event
    assert parsed.gateway_payment_id == payment_id
    assert parsed.report is not None
    assert parsed.report.status == Status(status)


def test_razorpay_other_events_carry_no_report(razorpay: RazorpayGateway) -> None:
    body = razorpay_body("refund.created", refund={"id": "rfnd_1", "entity": "refund"})
    event = razorpay.parse_webhook(razorpay_headers(body, RZP_SECRET), body, NOW)
    assert (event.event_type, event.gateway_payment_id, event.report) == (
        "refund.created",
        None,
        None,
    )
