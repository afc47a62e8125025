"""A loopback Stripe: PaymentIntents create/retrieve, Bearer auth, idempotency, signed events."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.wrappers import Request, Response

from . import FakeGateway

SECRET_KEY = "sk_test_fake_51Reconciler"
WEBHOOK_SECRET = "whsec_fake_current"

_ERRORS: dict[int, dict[str, str]] = {
    400: {"type": "invalid_request_error", "message": "Invalid request."},
    402: {"type": "card_error", "code": "card_declined", "message": "Your card was declined."},
    409: {
        "type": "idempotency_error",
        "code": "idempotency_key_in_use",
        "message": "There is currently another in-progress request using this Idempotent Key.",
    },
    429: {
        "type": "invalid_request_error",
        "code": "rate_limit",
        "message": "Too many requests hit the API too quickly.",
    },
    500: {"type": "api_error", "message": "Something went wrong on Stripe's end."},
    502: {"type": "api_error", "message": "Bad gateway."},
    503: {"type": "api_error", "message": "Service unavailable."},
}


class StripeFake(FakeGateway):
    """Serve `/v1/payment_intents` the way api.stripe.com does, from an in-memory store."""

    def __init__(self, secret_key: str = SECRET_KEY) -> None:
        super().__init__()
        self.secret_key = secret_key
        self.intents: dict[str, dict[str, Any]] = {}
        # Idempotency-Key -> (the request's parameters, the saved status and body)
        self._idempotency: dict[str, tuple[dict[str, str], int, dict[str, Any]]] = {}

    # --- test controls -------------------------------------------------------------------

    def add_intent(
        self,
        *,
        amount: int = 4990,
        currency: str = "usd",
        status: str = "requires_payment_method",
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Store a PaymentIntent as if the merchant had created it elsewhere."""
        intent_id = f"pi_{secrets.token_hex(12)}"
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": amount if status == "succeeded" else 0,
            "currency": currency,
            "status": status,
            "capture_method": "automatic",
            "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}",
            "created": int(time.time()),
            "last_payment_error": None,
            "livemode": False,
            "metadata": dict(metadata or {}),
        }
        with self._lock:
            self.intents[intent_id] = intent
        return intent

    def set_status(
        self, intent_id: str, status: str, *, last_payment_error: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Move an intent to `status` (a decline keeps `requires_payment_method` plus an error)."""
        with self._lock:
            intent = self.intents[intent_id]
            intent["status"] = status
            intent["last_payment_error"] = last_payment_error
            if status == "succeeded":
                intent["amount_received"] = intent["amount"]
            return dict(intent)

    def event(
        self, event_type: str, intent_id: str, *, created: int | None = None
    ) -> dict[str, Any]:
        """Build an event object wrapping a snapshot of the intent, as Stripe sends it."""
        with self._lock:
            snapshot = dict(self.intents[intent_id])
        return {
            "id": f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()) if created is None else created,
            "data": {"object": snapshot},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }

    @staticmethod
    def signed(
        event: dict[str, Any],
        *,
        secrets_: tuple[str, ...] = (WEBHOOK_SECRET,),
        timestamp: int | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """Serialise an event and sign it: one `v1` per secret, as during a rotation."""
        body = json.dumps(event, indent=2).encode()
        t = int(time.time()) if timestamp is None else timestamp
        signed_payload = f"{t}.".encode() + body
        parts = [f"t={t}"]
        for secret in secrets_:
            digest = hmac.new(secret.encode("utf-8"), signed_payload, hashlib.sha256).hexdigest()
            parts.append(f"v1={digest}")
        # Stripe test-mode deliveries also carry a v0 scheme that receivers must ignore.
        parts.append(f"v0={'0' * 64}")
        headers = {"Stripe-Signature": ",".join(parts), "Content-Type": "application/json"}
        return headers, body

    # --- the API -------------------------------------------------------------------------

    def error_body(self, status: int) -> dict[str, Any]:
        return {"error": dict(_ERRORS.get(status, _ERRORS[500]))}

    def handle(self, request: Request) -> Response:
        auth = request.headers.get("Authorization", "")
        if not auth:
            return self.json(
                401,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "message": "You did not provide an API key.",
                    }
                },
            )
        if not hmac.compare_digest(auth, f"Bearer {self.secret_key}"):
            shown = auth.removeprefix("Bearer ")[-4:]
            return self.json(
                401,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "message": f"Invalid API Key provided: sk_test_****{shown}",
                    }
                },
            )
        path = request.path
        if request.method == "POST" and path == "/v1/payment_intents":
            return self._create(request)
        if request.method == "POST" and path.startswith("/v1/payment_intents/"):
            intent_id, _, action = path.removeprefix("/v1/payment_intents/").partition("/")
            if action == "cancel":
                return self._cancel(intent_id, request)
        if request.method == "GET" and path.startswith("/v1/payment_intents/"):
            return self._retrieve(path.removeprefix("/v1/payment_intents/"))
        return self.json(
            404,
            {
                "error": {
                    "type": "invalid_request_error",
                    "message": f"Unrecognized request URL ({request.method}: {path}).",
                }
            },
        )

    def _cancel(self, intent_id: str, request: Request) -> Response:
        """Cancel as Stripe does: only from a status that can still be canceled."""
        params = dict(parse_qsl(request.get_data(as_text=True), keep_blank_values=True))
        with self._lock:
            intent = self.intents.get(intent_id)
            if intent is None:
                return self.json(404, self.error_body(404))
            if intent["status"] in ("succeeded", "canceled"):
                return self.json(
                    400,
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "code": "payment_intent_unexpected_state",
                            "message": f"This PaymentIntent's status is {intent['status']}.",
                        }
                    },
                )
            intent["status"] = "canceled"
            intent["cancellation_reason"] = params.get("cancellation_reason")
            return self.json(200, dict(intent))

    def _retrieve(self, intent_id: str) -> Response:
        with self._lock:
            intent = self.intents.get(intent_id)
            snapshot = dict(intent) if intent is not None else None
        if snapshot is None:
            return self.json(
                404,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "resource_missing",
                        "param": "intent",
                        "message": f"No such payment_intent: '{intent_id}'",
                        "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
                    }
                },
            )
        return self.json(200, snapshot)

    def _create(self, request: Request) -> Response:
        if request.mimetype != "application/x-www-form-urlencoded":
            return self.json(400, self.error_body(400))
        params = dict(parse_qsl(request.get_data(as_text=True), keep_blank_values=True))
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            with self._lock:
                saved = self._idempotency.get(key)
            if saved is not None:
                saved_params, saved_status, saved_body = saved
                if saved_params != params:
                    return self.json(
                        400,
                        {
                            "error": {
                                "type": "idempotency_error",
                                "message": (
                                    "Keys for idempotent requests can only be used with the "
                                    "same parameters they were first used with."
                                ),
                            }
                        },
                    )
                return self.json(saved_status, saved_body, {"Idempotent-Replayed": "true"})
        status, body = self._new_intent(params)
        if key is not None:
            with self._lock:
                self._idempotency[key] = (params, status, body)
        return self.json(status, body, {"Idempotency-Key": key} if key else {})

    def _new_intent(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        amount, currency = params.get("amount", ""), params.get("currency", "")
        if not amount.isdigit() or int(amount) < 1:
            return 400, {
                "error": {
                    "type": "invalid_request_error",
                    "code": "parameter_missing" if not amount else "parameter_invalid_integer",
                    "param": "amount",
                    "message": "Missing or invalid required param: amount.",
                }
            }
        if not currency or currency != currency.lower():
            return 400, {
                "error": {
                    "type": "invalid_request_error",
                    "code": "parameter_missing" if not currency else "invalid_currency",
                    "param": "currency",
                    "message": "Missing or invalid required param: currency.",
                }
            }
        metadata = {
            k.removeprefix("metadata[").removesuffix("]"): v
            for k, v in params.items()
            if k.startswith("metadata[")
        }
        intent = self.add_intent(amount=int(amount), currency=currency, metadata=metadata)
        return 200, dict(intent)
