"""The gateway port: what the service needs from any payment gateway, and its errors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from reconciler.domain.status import Report, Status


@dataclass(frozen=True)
class CreateRequest:
    """Create a payment at the gateway; `idempotency_key` makes a retry safe."""

    amount: int
    currency: str
    merchant_reference: str
    idempotency_key: str


@dataclass(frozen=True)
class GatewayPayment:
    """A gateway's answer about one payment, mapped to our status."""

    gateway_payment_id: str
    gateway_status: str
    status: Status
    occurred_at: datetime | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    attempt_error: str | None = None  # why the customer's last attempt failed, if it did

    def report(self) -> Report:
        return Report(self.status, self.gateway_status, self.occurred_at)


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook. `report` is None for events that say nothing about a status."""

    event_id: str
    event_type: str
    gateway_payment_id: str | None
    report: Report | None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpAnswer:
    """A gateway's HTTP answer, read whole: status, headers (any case), body, the URL asked."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    url: str

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """Decode the body as JSON (ValueError when it is not)."""
        return json.loads(self.content)


class GatewayError(Exception):
    """A call to the gateway did not give an answer about the payment.

    `response` is the gateway's HTTP answer when there was one, for adapters that read a
    gateway's own error body or headers (Stripe-Should-Retry, Razorpay's 400 not-found).
    """

    def __init__(self, message: str, *, response: HttpAnswer | None = None) -> None:
        super().__init__(message)
        self.response = response


class TransientError(GatewayError):
    """Timeout, connection error, 5xx or 429: try again later (not before `retry_after`)."""

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        *,
        response: HttpAnswer | None = None,
    ) -> None:
        super().__init__(message, response=response)
        self.retry_after = retry_after


class NotFoundError(GatewayError):
    """The gateway says it does not know the payment."""


class AuthError(GatewayError):
    """The gateway rejected our credentials: a configuration error, not the payment's fault."""


class RequestRejected(GatewayError):
    """The gateway refused a request as invalid (4xx other than 401/403/404/429)."""


class InvalidSignature(Exception):
    """The webhook's signature does not match, or its timestamp is outside the tolerance."""


class MalformedWebhook(Exception):
    """The webhook's body or signature header cannot be read."""


class Headers(Protocol):
    """Request headers as the web framework hands them over (Flask's, or a plain dict)."""

    def keys(self) -> Iterable[str]: ...

    def __getitem__(self, key: str) -> str: ...


class Gateway(Protocol):
    """What every gateway adapter offers."""

    name: str

    def create_payment(self, request: CreateRequest) -> GatewayPayment:
        """Create a payment; the same idempotency key never creates a second one."""
        ...

    def fetch_payment(self, gateway_payment_id: str) -> GatewayPayment:
        """Fetch the payment's current status."""
        ...

    def parse_webhook(self, headers: Headers, body: bytes, now: datetime) -> WebhookEvent:
        """Verify the signature on the raw body, then parse the event."""
        ...
