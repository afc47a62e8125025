"""The project's own gateway simulator: fetch, create (idempotent), Standard Webhooks.

Mapping: `processing` and `requires_action` are pending; `succeeded`, `failed` and
`canceled` are terminal and map to themselves. `occurred_at` is the payment's `updated_at`
(the time of its last transition), for polls and webhooks alike.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from standardwebhooks import Webhook

from reconciler.adapters.gateways import checks
from reconciler.adapters.gateways.base import (
    CreateRequest,
    GatewayPayment,
    Headers,
    InvalidSignature,
    MalformedWebhook,
    NotFoundError,
    TransientError,
    WebhookEvent,
)
from reconciler.adapters.gateways.http import HttpClient, Timeout, call, header, json_body
from reconciler.config import ConfigError, GatewayConfig
from reconciler.domain.status import Report, Status

STATUS_MAP: dict[str, Status] = {
    "processing": Status.PENDING,
    "requires_action": Status.PENDING,
    "succeeded": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "canceled": Status.CANCELED,
}

DETAIL_FIELDS = ("amount", "currency", "reference")

ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
)


def map_status(gateway_status: str) -> Status:
    """Map a simulator status to ours; an unknown one keeps the payment pending (polled)."""
    return STATUS_MAP.get(gateway_status, Status.PENDING)


def parse_signatures(value: str) -> list[bytes]:
    """Split `v1,<b64> v1,<b64>` into the v1 signatures (other versions ignored)."""
    signatures: list[bytes] = []
    for item in value.split():
        version, sep, encoded = item.partition(",")
        if not sep or not version or not encoded:
            raise MalformedWebhook(f"{SIGNATURE_HEADER} entry is not `version,signature`")
        if version != "v1":
            continue
        try:
            signatures.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            raise MalformedWebhook(f"{SIGNATURE_HEADER} is not base64") from None
    return signatures


def parse_timestamp(value: str) -> datetime:
    """Read an RFC 3339 timestamp; it must carry a UTC offset and lie in 2000-2100."""
    try:
        return checks.rfc3339(value, "timestamp")
    except MalformedWebhook as exc:
        raise ValueError(f"{exc}: {value[:40]!r}") from None


class SimulatorGateway:
    """Talks to the simulator's `/v1` API; a thin translation, no retries of its own."""

    name = "simulator"

    def __init__(
        self,
        config: GatewayConfig,
        *,
        session: HttpClient,
        timeout: Timeout,
        create_timeout: Timeout,
        webhook_tolerance_s: float = 300.0,
    ) -> None:
        self._base = (config.api_base or "http://127.0.0.1:8100").rstrip("/")
        self._key = config.api_key
        try:
            self._webhooks = [Webhook(secret) for secret in config.webhook_secrets]
        except Exception as exc:  # the library raises several kinds for a bad secret
            raise ConfigError(f"simulator webhook secret is not a whsec_ secret: {exc}") from None
        self._session = session
        self._timeout = timeout
        self._create_timeout = create_timeout
        self._tolerance = webhook_tolerance_s

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    def fetch_payment(self, gateway_payment_id: str) -> GatewayPayment:
        """Fetch the payment's current status."""
        if not gateway_payment_id:
            raise NotFoundError("empty simulator payment id")
        url = f"{self._base}/v1/payments/{quote(gateway_payment_id, '')}"
        response = call(self._session, "GET", url, timeout=self._timeout, headers=self._headers())
        return self._to_payment(json_body(response))

    def create_payment(self, request: CreateRequest) -> GatewayPayment:
        """Create a payment; the simulator returns the same one for the same Idempotency-Key."""
        response = call(
            self._session,
            "POST",
            f"{self._base}/v1/payments",
            timeout=self._create_timeout,
            json={
                "amount": request.amount,
                "currency": request.currency,
                "reference": request.merchant_reference,
            },
            headers=self._headers({"Idempotency-Key": request.idempotency_key}),
        )
        return self._to_payment(json_body(response))

    def parse_webhook(self, headers: Headers, body: bytes, now: datetime) -> WebhookEvent:
        """Verify the Standard Webhooks signature against `now` and every secret, then parse."""
        msg_id = header(headers, ID_HEADER)
        raw_timestamp = header(headers, TIMESTAMP_HEADER)
        raw_signature = header(headers, SIGNATURE_HEADER)
        if not msg_id or not raw_timestamp or not raw_signature:
            raise MalformedWebhook("missing webhook-id, webhook-timestamp or webhook-signature")
        msg_id = checks.identifier(msg_id, ID_HEADER)
        timestamp = checks.epoch_header(raw_timestamp, TIMESTAMP_HEADER)
        signatures = parse_signatures(raw_signature)
        # Checked here against the injected `now`: the library's own check reads the wall clock.
        if abs(now.timestamp() - timestamp) > self._tolerance:
            raise InvalidSignature(
                f"timestamp {timestamp} outside the {self._tolerance:g} s tolerance"
            )
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedWebhook("body is not UTF-8") from None
        signed_at = datetime.fromtimestamp(timestamp, UTC)
        expected = [
            base64.b64decode(webhook.sign(msg_id, signed_at, text).partition(",")[2])
            for webhook in self._webhooks
        ]
        # Every pair is compared so the time taken does not depend on which one matched.
        matches = [hmac.compare_digest(e, s) for e in expected for s in signatures]
        if not any(matches):
            raise InvalidSignature("no v1 signature matches a configured secret")
        return self._parse_event(msg_id, body)

    def _parse_event(self, event_id: str, body: bytes) -> WebhookEvent:
        event = checks.load_object(body)
        event_type, data = event.get("type"), event.get("data")
        if not isinstance(event_type, str) or not event_type:
            raise MalformedWebhook("event without a type")
        event_type = checks.status_word(event_type, "type")
        if not event_type.startswith("payment."):
            return WebhookEvent(event_id, event_type, None, None)
        if not isinstance(data, dict):
            raise MalformedWebhook("payment event without data")
        payment_id = checks.identifier(data.get("id"), "data.id")
        gateway_status = checks.status_word(data.get("status"), "data.status")
        occurred_at = checks.rfc3339(data.get("updated_at"), "data.updated_at")
        report = Report(map_status(gateway_status), gateway_status, occurred_at)
        return WebhookEvent(event_id, event_type, payment_id, report, detail=_detail(data))

    def _to_payment(self, body: Mapping[str, Any]) -> GatewayPayment:
        payment_id, gateway_status = body.get("id"), body.get("status")
        if not isinstance(payment_id, str) or not isinstance(gateway_status, str):
            raise TransientError("simulator answered without a payment id or status")
        updated_at = body.get("updated_at")
        occurred_at: datetime | None = None
        if isinstance(updated_at, str):
            try:
                occurred_at = parse_timestamp(updated_at)
            except ValueError as exc:
                raise TransientError(f"simulator answered {exc}") from None
        return GatewayPayment(
            gateway_payment_id=payment_id,
            gateway_status=gateway_status,
            status=map_status(gateway_status),
            occurred_at=occurred_at,
            detail=_detail(body),
        )


def _detail(data: Mapping[str, Any]) -> dict[str, Any]:
    """What the timeline keeps of a simulator payment: the fields it knows, nothing else."""
    return checks.known_fields(data, DETAIL_FIELDS)
