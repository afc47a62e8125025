"""Stripe PaymentIntents: fetch, create (idempotent), and `Stripe-Signature` webhooks.

Only `succeeded` and `canceled` are terminal for a PaymentIntent. A declined attempt sends
the intent back to `requires_payment_method` (the customer may try another card), so it
stays `pending` here; the decline is kept in the report's detail for the timeline.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from reconciler.adapters.gateways import checks
from reconciler.adapters.gateways.base import (
    AuthError,
    CreateRequest,
    GatewayError,
    GatewayPayment,
    Headers,
    HttpAnswer,
    InvalidSignature,
    MalformedWebhook,
    NotFoundError,
    RequestRejected,
    TransientError,
    WebhookEvent,
)
from reconciler.adapters.gateways.http import HttpClient, Timeout, call, header, json_body
from reconciler.config import STRIPE_API_VERSION, GatewayConfig
from reconciler.domain.status import Status

STATUS_MAP: dict[str, Status] = {
    "succeeded": Status.SUCCEEDED,
    "canceled": Status.CANCELED,
    "requires_payment_method": Status.PENDING,
    "requires_confirmation": Status.PENDING,
    "requires_action": Status.PENDING,
    "processing": Status.PENDING,
    "requires_capture": Status.PENDING,
}

SIGNATURE_HEADER = "Stripe-Signature"
_ERROR_FIELDS = ("type", "code", "decline_code", "message")


def map_status(gateway_status: str) -> Status:
    """Map a PaymentIntent status to ours; an unknown one keeps the payment pending (polled)."""
    return STATUS_MAP.get(gateway_status, Status.PENDING)


def parse_signature_header(value: str) -> tuple[int, list[str]]:
    """Split `t=…,v1=…[,v1=…]` into the timestamp and the v1 signatures (other schemes ignored)."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in value.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamp = checks.epoch_header(val, f"{SIGNATURE_HEADER} timestamp")
        elif key == "v1" and val:
            if not val.isascii():
                raise MalformedWebhook(f"{SIGNATURE_HEADER} v1 signature is not hex")
            signatures.append(val)
    if timestamp is None:
        raise MalformedWebhook(f"{SIGNATURE_HEADER} has no timestamp")
    if not signatures:
        raise MalformedWebhook(f"{SIGNATURE_HEADER} has no v1 signature")
    return timestamp, signatures


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Compute Stripe's v1 signature: hex HMAC-SHA256 of `"{t}.{body}"` keyed by the secret."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class StripeGateway:
    """Talks to Stripe's PaymentIntents API; a thin translation, no retries of its own."""

    name = "stripe"

    def __init__(
        self,
        config: GatewayConfig,
        *,
        session: HttpClient,
        timeout: Timeout,
        create_timeout: Timeout,
        webhook_tolerance_s: float = 300.0,
    ) -> None:
        self._base = (config.api_base or "https://api.stripe.com").rstrip("/")
        self._key = config.api_key or ""
        # Pinned so answers keep the shape the mapping below was written for, whatever the
        # account's default API version is.
        self._version = config.api_version or STRIPE_API_VERSION
        self._secrets = config.webhook_secrets
        self._session = session
        self._timeout = timeout
        self._create_timeout = create_timeout
        self._tolerance = webhook_tolerance_s

    def fetch_payment(self, gateway_payment_id: str) -> GatewayPayment:
        """Fetch the PaymentIntent; a poll has no event time, so `occurred_at` is None."""
        if not gateway_payment_id:
            raise NotFoundError("empty PaymentIntent id")
        url = f"{self._base}/v1/payment_intents/{quote(gateway_payment_id, '')}"
        intent = self._send("GET", url, timeout=self._timeout)
        return self._to_payment(intent, occurred_at=None)

    def create_payment(self, request: CreateRequest) -> GatewayPayment:
        """Create a PaymentIntent; Stripe replays the first answer for the same Idempotency-Key."""
        form = {
            "amount": str(request.amount),
            "currency": request.currency.lower(),
            "metadata[merchant_reference]": request.merchant_reference,
        }
        intent = self._send(
            "POST",
            f"{self._base}/v1/payment_intents",
            timeout=self._create_timeout,
            data=form,
            headers={"Idempotency-Key": request.idempotency_key},
        )
        return self._to_payment(intent, occurred_at=None)

    def parse_webhook(self, headers: Headers, body: bytes, now: datetime) -> WebhookEvent:
        """Verify `Stripe-Signature` on the raw body and the timestamp window, then parse."""
        raw_header = header(headers, SIGNATURE_HEADER)
        if not raw_header:
            raise MalformedWebhook(f"missing {SIGNATURE_HEADER} header")
        timestamp, signatures = parse_signature_header(raw_header)
        if not self._secrets:
            raise InvalidSignature("no Stripe webhook secret configured")
        expected = [sign(secret, timestamp, body) for secret in self._secrets]
        # Every pair is compared so the time taken does not depend on which one matched.
        matches = [hmac.compare_digest(e, s) for e in expected for s in signatures]
        if not any(matches):
            raise InvalidSignature("no v1 signature matches a configured secret")
        if abs(now.timestamp() - timestamp) > self._tolerance:
            raise InvalidSignature(
                f"timestamp {timestamp} outside the {self._tolerance:g} s tolerance"
            )
        return self._parse_event(body)

    def _parse_event(self, body: bytes) -> WebhookEvent:
        event = checks.load_object(body)
        if event.get("object") != "event":
            raise MalformedWebhook("body is not a Stripe event")
        event_id = checks.identifier(event.get("id"), "id")
        event_type = checks.status_word(event.get("type"), "type")
        occurred_at = checks.epoch_seconds(event.get("created"), "created")
        data = event.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
            raise MalformedWebhook("event without data.object")
        if not event_type.startswith("payment_intent."):
            return WebhookEvent(event_id, event_type, None, None)
        intent = data["object"]
        checks.identifier(intent.get("id"), "data.object.id")
        checks.status_word(intent.get("status"), "data.object.status")
        payment = self._to_payment(intent, occurred_at=occurred_at)
        detail = dict(payment.detail)
        if payment.attempt_error:
            # The decline in words, for `sync.last_error` (a poll carries it as attempt_error).
            detail["attempt_error"] = payment.attempt_error
        return WebhookEvent(
            event_id, event_type, payment.gateway_payment_id, payment.report(), detail
        )

    def _to_payment(
        self, intent: Mapping[str, Any], *, occurred_at: datetime | None
    ) -> GatewayPayment:
        intent_id, gateway_status = intent.get("id"), intent.get("status")
        if not isinstance(intent_id, str) or not isinstance(gateway_status, str):
            raise TransientError("Stripe answered without a PaymentIntent id or status")
        detail: dict[str, Any] = {}
        attempt_error = None
        error = intent.get("last_payment_error")
        if gateway_status == "requires_payment_method" and isinstance(error, dict):
            kept = checks.known_fields(error, _ERROR_FIELDS)
            detail["last_payment_error"] = kept
            attempt_error = (
                ": ".join(str(kept[k]) for k in ("code", "decline_code", "message") if k in kept)
                or "payment attempt failed"
            )
        return GatewayPayment(
            gateway_payment_id=intent_id,
            gateway_status=gateway_status,
            status=map_status(gateway_status),
            occurred_at=occurred_at,
            detail=detail,
            attempt_error=attempt_error,
        )

    def _send(self, method: str, url: str, *, timeout: Timeout, **kwargs: Any) -> dict[str, Any]:
        try:
            headers = {"Authorization": f"Bearer {self._key}", "Stripe-Version": self._version}
            headers.update(kwargs.pop("headers", None) or {})
            response = call(self._session, method, url, timeout=timeout, headers=headers, **kwargs)
        except (TransientError, RequestRejected) as exc:
            raise _reclassify(exc, exc.response) from exc
        except (AuthError, NotFoundError) as exc:
            if exc.response is not None:
                raise type(exc)(f"{exc}: {_error_message(exc.response)}") from exc
            raise
        return json_body(response)


def _error_message(response: HttpAnswer) -> str:
    """Summarise Stripe's `{"error": {"type", "code", "message"}}` body."""
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return response.text[:200]
    if not isinstance(error, dict):
        return response.text[:200]
    parts = [str(error[k]) for k in ("type", "code") if error.get(k)]
    return f"{'/'.join(parts)}: {error.get('message', '')}".strip(": ")


def _reclassify(exc: GatewayError, response: HttpAnswer | None) -> GatewayError:
    """Apply `Stripe-Should-Retry`: Stripe's own word on whether a retry can succeed."""
    if response is None:
        return exc  # no answer at all (timeout, connection): transient as it was
    should_retry = (response.headers.get("Stripe-Should-Retry") or "").strip().lower()
    message = f"HTTP {response.status_code} from Stripe: {_error_message(response)}"
    if should_retry == "true":
        retry_after = exc.retry_after if isinstance(exc, TransientError) else None
        return TransientError(message, retry_after=retry_after)
    if should_retry == "false":
        return RequestRejected(message)
    if isinstance(exc, TransientError):
        return TransientError(message, retry_after=exc.retry_after)
    return RequestRejected(message)
