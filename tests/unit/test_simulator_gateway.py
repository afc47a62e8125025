"""The simulator adapter's webhook verification, with signatures made by hand per the spec."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler.adapters.gateways.base import InvalidSignature, MalformedWebhook
from reconciler.adapters.gateways.simulator import SimulatorGateway, map_status
from reconciler.adapters.gateways.transport import HttpClient
from reconciler.config import GatewayConfig
from reconciler.domain.status import Status

OLD_SECRET = "whsec_" + base64.b64encode(b"old-secret-0123456789abcdef").decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"new-secret-0123456789abcdef").decode()
NOW = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Sign the Standard Webhooks way, independently of the library under test."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    message = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def event_body(**overrides: Any) -> bytes:
    data = {
        "id": "sim_pay_abc",
        "status": "succeeded",
        "amount": 4990,
        "currency": "INR",
        "reference": "order-1",
        "created_at": "2026-11-28T09:59:58Z",
        "updated_at": "2026-11-28T09:59:59.250000Z",
    }
    event: dict[str, Any] = {
        "type": "payment.succeeded",
        "timestamp": "2026-11-28T09:59:59.250000Z",
        "data": data,
    }
    event.update(overrides)
    return json.dumps(event).encode()


def signed_headers(
    body: bytes,
    *,
    secret: str = NEW_SECRET,
    msg_id: str = "msg_1",
    at: datetime = NOW,
) -> dict[str, str]:
    timestamp = int(at.timestamp())
    return {
        "Webhook-Id": msg_id,
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": sign(secret, msg_id, timestamp, body),
    }


@pytest.fixture
def gateway() -> SimulatorGateway:
    config = GatewayConfig(
        "simulator", api_base="http://127.0.0.1:1", webhook_secrets=(NEW_SECRET, OLD_SECRET)
    )
    session = HttpClient()
    gateway = SimulatorGateway(
        config, session=session, timeout=(1, 1), create_timeout=(1, 1), webhook_tolerance_s=300
    )
    session.close()
    return gateway


def test_a_correctly_signed_event_becomes_a_report(gateway: SimulatorGateway) -> None:
    body = event_body()
    event = gateway.parse_webhook(signed_headers(body), body, NOW)
    assert event.event_id == "msg_1"
    assert event.event_type == "payment.succeeded"
    assert event.gateway_payment_id == "sim_pay_abc"
    assert event.report is not None
    assert event.report.status is Status.SUCCEEDED
    assert event.report.gateway_status == "succeeded"
    assert event.report.occurred_at == datetime(2026, 11, 28, 9, 59, 59, 250000, tzinfo=UTC)


def test_lowercase_headers_are_read_too(gateway: SimulatorGateway) -> None:
    body = event_body()
    headers = {k.lower(): v for k, v in signed_headers(body).items()}
    assert gateway.parse_webhook(headers, body, NOW).event_id == "msg_1"


def test_an_event_signed_with_the_previous_secret_is_accepted_during_rotation(
    gateway: SimulatorGateway,
) -> None:
    body = event_body()
    event = gateway.parse_webhook(signed_headers(body, secret=OLD_SECRET), body, NOW)
    assert event.gateway_payment_id == "sim_pay_abc"


def test_one_matching_signature_among_several_is_enough(gateway: SimulatorGateway) -> None:
    body = event_body()
    headers = signed_headers(body)
    stranger = sign("whsec_" + base64.b64encode(b"someone-else").decode(), "msg_1", 1, body)
    headers["Webhook-Signature"] = f"{stranger} v1a,ignored {headers['Webhook-Signature']}"
    assert gateway.parse_webhook(headers, body, NOW).event_id == "msg_1"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h, b: (h, b.replace(b"4990", b"4991")), id="body changed"),
        pytest.param(lambda h, b: ({**h, "Webhook-Id": "msg_2"}, b), id="id changed"),
        # The signature covers the timestamp: moving it by one second breaks it.
        pytest.param(
            lambda h, b: ({**h, "Webhook-Timestamp": str(int(h["Webhook-Timestamp"]) + 1)}, b),
            id="timestamp changed",
        ),
        pytest.param(
            lambda h, b: (
                {
                    **h,
                    "Webhook-Signature": sign(
                        "whsec_" + base64.b64encode(b"x").decode(),
                        h["Webhook-Id"],
                        int(h["Webhook-Timestamp"]),
                        b,
                    ),
                },
                b,
            ),
            id="unknown secret",
        ),
        # Only v1 signatures count; a header with none matches nothing.
        pytest.param(
            lambda h, b: ({**h, "Webhook-Signature": "v2," + h["Webhook-Signature"][3:]}, b),
            id="no v1 signature",
        ),
    ],
)
def test_a_wrong_signature_is_rejected(gateway: SimulatorGateway, tamper: Any) -> None:
    body = event_body()
    headers, body = tamper(signed_headers(body), body)
    with pytest.raises(InvalidSignature):
        gateway.parse_webhook(headers, body, NOW)


@pytest.mark.parametrize(
    ("signed_at", "accepted"),
    [
        (NOW - timedelta(seconds=299), True),
        (NOW + timedelta(seconds=299), True),
        (NOW - timedelta(seconds=301), False),  # a replay
        (NOW + timedelta(seconds=301), False),  # from the future
        (NOW - timedelta(days=1), False),
    ],
)
def test_the_timestamp_must_be_within_the_tolerance_of_the_given_now(
    gateway: SimulatorGateway, signed_at: datetime, accepted: bool
) -> None:
    body = event_body()
    headers = signed_headers(body, at=signed_at)
    if accepted:
        assert gateway.parse_webhook(headers, body, NOW).event_id == "msg_1"
    else:
        with pytest.raises(InvalidSignature):
            gateway.parse_webhook(headers, body, NOW)


def test_the_injected_now_governs_not_the_wall_clock(gateway: SimulatorGateway) -> None:
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    body = event_body()
    event = gateway.parse_webhook(signed_headers(body, at=long_ago), body, long_ago)
    assert event.event_id == "msg_1"


@pytest.mark.parametrize("missing", ["Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"])
def test_a_missing_header_is_malformed(gateway: SimulatorGateway, missing: str) -> None:
    body = event_body()
    headers = signed_headers(body)
    del headers[missing]
    with pytest.raises(MalformedWebhook):
        gateway.parse_webhook(headers, body, NOW)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Webhook-Timestamp", "yesterday"),
        ("Webhook-Timestamp", "1.5e9"),
        ("Webhook-Timestamp", "\u00b2"),  # "²".isdigit() is True, int("²") raises (found by fuzz)
        ("Webhook-Signature", "garbage"),
        ("Webhook-Signature", "v1,not*base64!"),
        ("Webhook-Signature", "v1,"),
    ],
)
def test_a_garbled_header_is_malformed(gateway: SimulatorGateway, name: str, value: str) -> None:
    body = event_body()
    headers = {**signed_headers(body), name: value}
    with pytest.raises(MalformedWebhook):
        gateway.parse_webhook(headers, body, NOW)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        json.dumps({"data": {"id": "sim_pay_abc"}}).encode(),  # no type
        event_body(data=None),
        event_body(data={"status": "succeeded", "updated_at": "2026-11-28T10:00:00Z"}),
        event_body(data={"id": "sim_pay_abc", "updated_at": "2026-11-28T10:00:00Z"}),
        event_body(data={"id": "sim_pay_abc", "status": "succeeded"}),
        event_body(data={"id": "sim_pay_abc", "status": "succeeded", "updated_at": "soon"}),
        # A time without an offset cannot be ordered against the others.
        event_body(
            data={"id": "sim_pay_abc", "status": "succeeded", "updated_at": "2026-11-28T10:00:00"}
        ),
    ],
)
def test_a_correctly_signed_but_garbage_body_is_malformed(
    gateway: SimulatorGateway, body: bytes
) -> None:
    with pytest.raises(MalformedWebhook):
        gateway.parse_webhook(signed_headers(body), body, NOW)


def test_an_event_about_something_else_carries_no_report(gateway: SimulatorGateway) -> None:
    body = json.dumps({"type": "account.updated", "data": {}}).encode()
    event = gateway.parse_webhook(signed_headers(body), body, NOW)
    assert event.report is None
    assert event.gateway_payment_id is None


def test_without_configured_secrets_nothing_verifies() -> None:
    session = HttpClient()
    gateway = SimulatorGateway(
        GatewayConfig("simulator", api_base="http://127.0.0.1:1"),
        session=session,
        timeout=(1, 1),
        create_timeout=(1, 1),
    )
    session.close()
    body = event_body()
    with pytest.raises(InvalidSignature):
        gateway.parse_webhook(signed_headers(body), body, NOW)


@pytest.mark.parametrize(
    ("gateway_status", "status"),
    [
        ("processing", Status.PENDING),
        ("requires_action", Status.PENDING),
        ("succeeded", Status.SUCCEEDED),
        ("failed", Status.FAILED),
        ("canceled", Status.CANCELED),
        ("something_new", Status.PENDING),  # unknown: keep polling rather than guess an end
    ],
)
def test_statuses_map_onto_ours(gateway_status: str, status: Status) -> None:
    assert map_status(gateway_status) is status
