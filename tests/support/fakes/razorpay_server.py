"""A loopback Razorpay: payments and orders, HTTP basic auth, signed webhook deliveries."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from werkzeug.wrappers import Request, Response

from . import FakeGateway

KEY_ID = "rzp_test_FakeKeyId01"
KEY_SECRET = "fake_key_secret_0123456789"
WEBHOOK_SECRET = "rzp_webhook_secret_current"

_ERROR_DESCRIPTIONS: dict[int, tuple[str, str]] = {
    400: ("BAD_REQUEST_ERROR", "The request is invalid."),
    401: ("BAD_REQUEST_ERROR", "Authentication failed"),
    429: ("BAD_REQUEST_ERROR", "Too many requests"),
    500: ("SERVER_ERROR", "The server encountered an error. The incident has been reported."),
    502: ("GATEWAY_ERROR", "Bad gateway."),
    503: ("SERVER_ERROR", "Service unavailable."),
}


def _random_id(prefix: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(14))


def error(code: str, description: str, *, field: str | None = None) -> dict[str, Any]:
    """Razorpay's error body."""
    body: dict[str, Any] = {
        "code": code,
        "description": description,
        "source": "business" if code == "BAD_REQUEST_ERROR" else "NA",
        "step": "payment_initiation" if code == "BAD_REQUEST_ERROR" else "NA",
        "reason": "input_validation_failed" if code == "BAD_REQUEST_ERROR" else "NA",
        "metadata": {},
    }
    if field is not None:
        body["field"] = field
    return {"error": body}


class RazorpayFake(FakeGateway):
    """Serve `/v1/payments` and `/v1/orders` the way api.razorpay.com does, in memory."""

    def __init__(self, key_id: str = KEY_ID, key_secret: str = KEY_SECRET) -> None:
        super().__init__()
        self.key_id = key_id
        self.key_secret = key_secret
        self.payments: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}

    # --- test controls -------------------------------------------------------------------

    def add_payment(
        self,
        *,
        amount: int = 49900,
        currency: str = "INR",
        status: str = "created",
        order_id: str | None = None,
    ) -> dict[str, Any]:
        """Store a payment as if a customer had started paying in Checkout."""
        payment: dict[str, Any] = {
            "id": _random_id("pay_"),
            "entity": "payment",
            "amount": amount,
            "currency": currency,
            "status": status,
            "order_id": order_id,
            "invoice_id": None,
            "international": False,
            "method": "upi",
            "amount_refunded": 0,
            "refund_status": None,
            "captured": status in ("captured", "refunded"),
            "description": None,
            "email": "gaurav.kumar@example.com",
            "contact": "+919000090000",
            "notes": [],
            "fee": None,
            "tax": None,
            "error_code": None,
            "error_description": None,
            "error_source": None,
            "error_step": None,
            "error_reason": None,
            "created_at": int(time.time()),
        }
        with self._lock:
            self.payments[payment["id"]] = payment
        return dict(payment)

    def set_payment_status(self, payment_id: str, status: str) -> dict[str, Any]:
        """Move a payment; `failed` gets an error, `refunded` a full refund, as Razorpay does."""
        with self._lock:
            payment = self.payments[payment_id]
            payment["status"] = status
            payment["captured"] = status in ("captured", "refunded")
            if status == "failed":
                payment.update(
                    error_code="BAD_REQUEST_ERROR",
                    error_description="Payment processing failed because of incorrect OTP",
                    error_source="customer",
                    error_step="payment_authentication",
                    error_reason="incorrect_otp",
                )
            if status == "refunded":
                payment.update(amount_refunded=payment["amount"], refund_status="full")
            return dict(payment)

    def pay_order(self, order_id: str) -> dict[str, Any]:
        """Let a customer pay an order: a captured payment on it, and the order `paid`."""
        with self._lock:
            order = self.orders[order_id]
            amount, currency = order["amount"], order["currency"]
        payment = self.add_payment(
            amount=amount, currency=currency, status="captured", order_id=order_id
        )
        with self._lock:
            order.update(status="paid", amount_paid=amount, amount_due=0)
            order["attempts"] += 1
        return payment

    def webhook(
        self,
        event: str,
        *,
        payment_id: str | None = None,
        order_id: str | None = None,
        created_at: int | None = None,
        secret: str = WEBHOOK_SECRET,
        event_id: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """Build a delivery of `event` about a stored payment and/or order, signed with hmac."""
        payload: dict[str, Any] = {}
        with self._lock:
            if payment_id is not None:
                payload["payment"] = {"entity": dict(self.payments[payment_id])}
            if order_id is not None:
                payload["order"] = {"entity": dict(self.orders[order_id])}
        body = json.dumps(
            {
                "entity": "event",
                "account_id": "acc_BFQ7uQEaa7j2z7",
                "event": event,
                "contains": list(payload),
                "payload": payload,
                "created_at": int(time.time()) if created_at is None else created_at,
            }
        ).encode()
        signature = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Razorpay-Signature": signature,
            "x-razorpay-event-id": event_id or _random_id("evt_"),
        }
        return headers, body

    # --- the API -------------------------------------------------------------------------

    def error_body(self, status: int) -> dict[str, Any]:
        code, description = _ERROR_DESCRIPTIONS.get(status, _ERROR_DESCRIPTIONS[500])
        return error(code, description)

    def _authorised(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        key_id, _, key_secret = decoded.partition(":")
        return hmac.compare_digest(key_id, self.key_id) and hmac.compare_digest(
            key_secret, self.key_secret
        )

    def handle(self, request: Request) -> Response:
        if not self._authorised(request):
            return self.json(401, self.error_body(401))
        path, method = request.path, request.method
        if method == "GET" and path.startswith("/v1/payments/"):
            return self._fetch(self.payments, path.removeprefix("/v1/payments/"))
        if method == "GET" and path.startswith("/v1/orders/"):
            return self._fetch(self.orders, path.removeprefix("/v1/orders/"))
        if method == "GET" and path == "/v1/orders":
            return self._list_orders(request)
        if method == "POST" and path == "/v1/orders":
            return self._create_order(request)
        return self.json(
            400, error("BAD_REQUEST_ERROR", "The requested URL was not found on the server.")
        )

    def _fetch(self, store: dict[str, dict[str, Any]], entity_id: str) -> Response:
        with self._lock:
            entity = store.get(entity_id)
            snapshot = dict(entity) if entity is not None else None
        if snapshot is None:
            # Razorpay answers an unknown id with a 400, not a 404.
            return self.json(
                400, error("BAD_REQUEST_ERROR", "The id provided does not exist", field="id")
            )
        return self.json(200, snapshot)

    def _list_orders(self, request: Request) -> Response:
        receipt = request.args.get("receipt")
        count = min(int(request.args.get("count", "10")), 100)
        skip = int(request.args.get("skip", "0"))
        with self._lock:
            orders = [
                dict(o)
                for o in sorted(self.orders.values(), key=lambda o: -o["created_at"])
                if receipt is None or o["receipt"] == receipt
            ]
        items = orders[skip : skip + count]
        return self.json(200, {"entity": "collection", "count": len(items), "items": items})

    def _create_order(self, request: Request) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return self.json(400, error("BAD_REQUEST_ERROR", "The request body is not JSON."))
        amount, currency, receipt = body.get("amount"), body.get("currency"), body.get("receipt")
        if not isinstance(amount, int) or amount < 100:
            return self.json(
                400,
                error(
                    "BAD_REQUEST_ERROR",
                    "The amount must be atleast INR 1.00",
                    field="amount",
                ),
            )
        if not isinstance(currency, str) or len(currency) != 3:
            return self.json(
                400, error("BAD_REQUEST_ERROR", "The currency is invalid.", field="currency")
            )
        if receipt is not None and (not isinstance(receipt, str) or len(receipt) > 40):
            return self.json(
                400,
                error(
                    "BAD_REQUEST_ERROR",
                    "The receipt may not be greater than 40 characters.",
                    field="receipt",
                ),
            )
        notes = body.get("notes") or []
        order: dict[str, Any] = {
            "id": _random_id("order_"),
            "entity": "order",
            "amount": amount,
            "amount_paid": 0,
            "amount_due": amount,
            "currency": currency,
            "receipt": receipt,
            "offer_id": None,
            "status": "created",
            "attempts": 0,
            "notes": notes,
            "created_at": int(time.time()),
        }
        with self._lock:
            self.orders[order["id"]] = order
        return self.json(200, dict(order))
