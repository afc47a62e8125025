"""The payment resource as merchants see it: in the API and in every notification's `data`.

Rendered here, from the row's columns, so the outbox needs no HTTP schema; the API's
shape (`entrypoints.schemas.Payment`) is checked against this by a test.
"""

from __future__ import annotations

from typing import Any

from reconciler.domain.times import rfc3339


def payment_resource(row: Any) -> dict[str, Any]:
    """Render a payment row (a snapshot or a stored row) as `GET /v1/payments/{id}` does."""
    return {
        "id": row.id,
        "merchant_reference": row.merchant_reference,
        "gateway": row.gateway,
        "gateway_payment_id": row.gateway_payment_id,
        "amount": row.amount,
        "currency": row.currency,
        "status": row.status,
        "gateway_status": row.gateway_status,
        "status_source": row.status_source,
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
        "settled_at": rfc3339(row.settled_at),
        "review_reason": row.review_reason,
        "sync": {
            "state": row.sync_state,
            "poll_attempts": row.poll_attempts,
            "next_poll_at": rfc3339(row.next_poll_at),
            "last_polled_at": rfc3339(row.last_polled_at),
            "last_error": row.last_error,
            "give_up_at": rfc3339(row.give_up_at),
        },
    }
