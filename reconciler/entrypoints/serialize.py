"""JSON shapes of the API's resources."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from reconciler.adapters.models import Payment, PaymentEvent


def rfc3339(value: datetime | None) -> str | None:
    """Format an aware datetime as RFC 3339 UTC with a `Z`."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payment_json(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "merchant_reference": payment.merchant_reference,
        "gateway": payment.gateway,
        "gateway_payment_id": payment.gateway_payment_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "status": payment.status,
        "gateway_status": payment.gateway_status,
        "status_source": payment.status_source,
        "created_at": rfc3339(payment.created_at),
        "updated_at": rfc3339(payment.updated_at),
        "settled_at": rfc3339(payment.settled_at),
        "review_reason": payment.review_reason,
        "sync": {
            "state": payment.sync_state,
            "poll_attempts": payment.poll_attempts,
            "next_poll_at": rfc3339(payment.next_poll_at),
            "last_polled_at": rfc3339(payment.last_polled_at),
            "last_error": payment.last_error,
            "give_up_at": rfc3339(payment.give_up_at),
        },
    }


def event_json(event: PaymentEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "recorded_at": rfc3339(event.recorded_at),
        "source": event.source,
        "outcome": event.outcome,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "gateway_status": event.gateway_status,
        "gateway_event_id": event.gateway_event_id,
        "occurred_at": rfc3339(event.occurred_at),
        "detail": event.detail,
    }
