"""Razorpay payments and orders: fetch, create an order (deduplicated), signed webhooks.

A payment the service creates is a Razorpay *order* (`order_…`): the customer pays against
it in Razorpay Checkout, and the order turns `paid` once a payment on it is captured. A
payment the merchant registers with a `pay_…` id is tracked through the payments API.

Razorpay's `failed` is not always final: a bank's late authorisation can turn a failed
payment into `authorized`/`captured` later. The status rules take care of that (captured
money outranks everything); this adapter only reports what Razorpay says.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import urllib3

from reconciler.adapters.gateways import checks
from reconciler.adapters.gateways.base import (
    CreateRequest,
    GatewayPayment,
    Headers,
    InvalidSignature,
    MalformedWebhook,
    NotFoundError,
    RequestRejected,
    TransientError,
    WebhookEvent,
)
from reconciler.adapters.gateways.http import HttpClient, Timeout, call, header, json_body
from reconciler.config import GatewayConfig
from reconciler.domain.status import Report, Status

PAYMENT_STATUS_MAP: dict[str, Status] = {
    "created": Status.PENDING,
    "authorized": Status.PENDING,  # not captured yet: no money moved
    "captured": Status.SUCCEEDED,
    "refunded": Status.SUCCEEDED,  # captured first; the refund is in the detail
    "failed": Status.FAILED,
}

ORDER_STATUS_MAP: dict[str, Status] = {
    "created": Status.PENDING,
    "attempted": Status.PENDING,  # a payment was tried; the customer may still pay
    "paid": Status.SUCCEEDED,
}

PAYMENT_EVENTS = ("payment.authorized", "payment.captured", "payment.failed")
ORDER_EVENTS = ("order.paid",)

SIGNATURE_HEADER = "X-Razorpay-Signature"
EVENT_ID_HEADER = "x-razorpay-event-id"
RECEIPT_MAX_LEN = 40  # Razorpay rejects a longer order receipt
_NOT_FOUND_DESCRIPTION = "the id provided does not exist"
_PAYMENT_DETAIL_FIELDS = (
    "order_id",
    "amount_refunded",
    "refund_status",
    "error_code",
    "error_description",
    "error_source",
    "error_step",
    "error_reason",
)


def map_payment_status(gateway_status: str) -> Status:
    """Map a payment status to ours; an unknown one keeps the payment pending (polled)."""
    return PAYMENT_STATUS_MAP.get(gateway_status, Status.PENDING)


def map_order_status(gateway_status: str) -> Status:
    """Map an order status to ours; orders never fail, they stay unpaid."""
    return ORDER_STATUS_MAP.get(gateway_status, Status.PENDING)


def sign(secret: str, body: bytes) -> str:
    """Compute Razorpay's webhook signature: hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class RazorpayGateway:
    """Talks to Razorpay's payments and orders APIs; no retries of its own."""

    name = "razorpay"

    def __init__(
        self,
        config: GatewayConfig,
        *,
        session: HttpClient,
        timeout: Timeout,
        create_timeout: Timeout,
        webhook_tolerance_s: float = 300.0,  # unused: Razorpay signs no timestamp
    ) -> None:
        self._base = (config.api_base or "https://api.razorpay.com").rstrip("/")
        self._auth = urllib3.make_headers(
            basic_auth=f"{config.api_key or ''}:{config.api_secret or ''}"
        )
        self._secrets = config.webhook_secrets
        self._session = session
        self._timeout = timeout
        self._create_timeout = create_timeout

    def fetch_payment(self, gateway_payment_id: str) -> GatewayPayment:
        """Fetch an order (`order_…`) or a payment (`pay_…`); a poll has no event time."""
        if not gateway_payment_id:
            raise NotFoundError("empty Razorpay id")
        quoted = quote(gateway_payment_id, "")
        if gateway_payment_id.startswith("order_"):
            order = self._send("GET", f"{self._base}/v1/orders/{quoted}", timeout=self._timeout)
            return _order_to_payment(order, occurred_at=None)
        payment = self._send("GET", f"{self._base}/v1/payments/{quoted}", timeout=self._timeout)
        return _payment_to_payment(payment, occurred_at=None)

    def create_payment(self, request: CreateRequest) -> GatewayPayment:
        """Create an order, unless an earlier attempt with the same idempotency key made one.

        Razorpay orders take no idempotency header, so a retry first lists the orders with
        this receipt and reuses the one whose `notes.idempotency_key` matches.
        """
        receipt = request.merchant_reference[:RECEIPT_MAX_LEN]
        existing = self._find_order(receipt, request.idempotency_key)
        if existing is not None:
            return _order_to_payment(existing, occurred_at=None)
        order = self._send(
            "POST",
            f"{self._base}/v1/orders",
            timeout=self._create_timeout,
            json={
                "amount": request.amount,
                "currency": request.currency.upper(),
                "receipt": receipt,
                "notes": {
                    "idempotency_key": request.idempotency_key,
                    "merchant_reference": request.merchant_reference,
                },
            },
        )
        return _order_to_payment(order, occurred_at=None)

    def parse_webhook(self, headers: Headers, body: bytes, now: datetime) -> WebhookEvent:
        """Verify `X-Razorpay-Signature` on the raw body, then parse the event.

        The signature covers no timestamp, so there is no replay window to check: a replayed
        delivery carries the same `x-razorpay-event-id` and is dropped as a duplicate.
        """
        signature = header(headers, SIGNATURE_HEADER)
        if not signature:
            raise MalformedWebhook(f"missing {SIGNATURE_HEADER} header")
        if not self._secrets:
            raise InvalidSignature("no Razorpay webhook secret configured")
        given = signature.strip().lower()
        if not given.isascii():
            raise MalformedWebhook(f"{SIGNATURE_HEADER} is not hex")
        matches = [hmac.compare_digest(sign(secret, body), given) for secret in self._secrets]
        if not any(matches):
            raise InvalidSignature(f"{SIGNATURE_HEADER} matches no configured secret")
        event_id = header(headers, EVENT_ID_HEADER)
        if not event_id:
            raise MalformedWebhook(f"missing {EVENT_ID_HEADER} header")
        return _parse_event(checks.identifier(event_id.strip(), EVENT_ID_HEADER), body)

    def _find_order(self, receipt: str, idempotency_key: str) -> dict[str, Any] | None:
        listing = self._send(
            "GET",
            f"{self._base}/v1/orders",
            timeout=self._timeout,
            params={"receipt": receipt, "count": 100},
        )
        items = listing.get("items")
        if not isinstance(items, list):
            raise TransientError("Razorpay order listing without items")
        for order in items:
            if isinstance(order, dict) and _notes(order).get("idempotency_key") == idempotency_key:
                return order
        return None

    def _send(self, method: str, url: str, *, timeout: Timeout, **kwargs: Any) -> dict[str, Any]:
        try:
            response = call(
                self._session, method, url, timeout=timeout, headers=self._auth, **kwargs
            )
        except RequestRejected as exc:
            # Razorpay answers an unknown id with 400 BAD_REQUEST_ERROR, not 404.
            if _NOT_FOUND_DESCRIPTION in str(exc).lower():
                raise NotFoundError(f"Razorpay does not know it: {url}") from exc
            raise
        return json_body(response)


def _notes(entity: Mapping[str, Any]) -> Mapping[str, Any]:
    # Razorpay serialises empty notes as [] rather than {}.
    notes = entity.get("notes")
    return notes if isinstance(notes, dict) else {}


def _order_to_payment(order: Mapping[str, Any], *, occurred_at: datetime | None) -> GatewayPayment:
    order_id, gateway_status = order.get("id"), order.get("status")
    if not isinstance(order_id, str) or not isinstance(gateway_status, str):
        raise TransientError("Razorpay answered without an order id or status")
    detail = checks.known_fields(order, ("amount_paid", "attempts"))
    return GatewayPayment(
        gateway_payment_id=order_id,
        gateway_status=gateway_status,
        status=map_order_status(gateway_status),
        occurred_at=occurred_at,
        detail=detail,
    )


def _payment_to_payment(
    payment: Mapping[str, Any], *, occurred_at: datetime | None
) -> GatewayPayment:
    payment_id, gateway_status = payment.get("id"), payment.get("status")
    if not isinstance(payment_id, str) or not isinstance(gateway_status, str):
        raise TransientError("Razorpay answered without a payment id or status")
    detail = {k: v for k, v in checks.known_fields(payment, _PAYMENT_DETAIL_FIELDS).items() if v}
    return GatewayPayment(
        gateway_payment_id=payment_id,
        gateway_status=gateway_status,
        status=map_payment_status(gateway_status),
        occurred_at=occurred_at,
        detail=detail,
    )


def _entity(payload: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    wrapper = payload.get(name)
    entity = wrapper.get("entity") if isinstance(wrapper, dict) else None
    if not isinstance(entity, dict):
        raise MalformedWebhook(f"event without payload.{name}.entity")
    checks.identifier(entity.get("id"), f"payload.{name}.entity.id")
    checks.status_word(entity.get("status"), f"payload.{name}.entity.status")
    return entity


def _parse_event(event_id: str, body: bytes) -> WebhookEvent:
    event = checks.load_object(body)
    if event.get("entity") != "event":
        raise MalformedWebhook("body is not a Razorpay event")
    event_type, payload = event.get("event"), event.get("payload")
    if not isinstance(event_type, str) or not isinstance(payload, dict):
        raise MalformedWebhook("event without event name or payload")
    event_type = checks.status_word(event_type, "event")
    occurred_at = checks.epoch_seconds(event.get("created_at"), "created_at")
    try:
        if event_type in PAYMENT_EVENTS:
            payment = _payment_to_payment(_entity(payload, "payment"), occurred_at=occurred_at)
        elif event_type in ORDER_EVENTS:
            payment = _order_to_payment(_entity(payload, "order"), occurred_at=occurred_at)
        else:
            return WebhookEvent(event_id, event_type, None, None)
    except TransientError as exc:  # an entity without id/status: the body, not the gateway
        raise MalformedWebhook(str(exc)) from None
    report = Report(payment.status, payment.gateway_status, occurred_at)
    return WebhookEvent(event_id, event_type, payment.gateway_payment_id, report, payment.detail)
