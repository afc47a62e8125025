"""The webhook event type each gateway sends for a terminal status.

A terminal status a poll found first was missed by the webhook of this type: the
reliability counts put it beside the received webhooks of that type.
"""

from __future__ import annotations

from reconciler.domain.status import Status

TERMINAL_EVENT_TYPES: dict[str, dict[Status, str]] = {
    "simulator": {
        Status.SUCCEEDED: "payment.succeeded",
        Status.FAILED: "payment.failed",
        Status.CANCELED: "payment.canceled",
    },
    "stripe": {
        Status.SUCCEEDED: "payment_intent.succeeded",
        Status.FAILED: "payment_intent.payment_failed",
        Status.CANCELED: "payment_intent.canceled",
    },
    "razorpay": {
        Status.SUCCEEDED: "payment.captured",
        Status.FAILED: "payment.failed",
        # Razorpay sends no webhook for an order that expires unpaid.
        Status.CANCELED: "order.expired",
    },
}


def terminal_event_type(gateway: str, status: Status) -> str:
    """Name the webhook a gateway sends when a payment reaches `status`."""
    return TERMINAL_EVENT_TYPES.get(gateway, {}).get(status, f"payment.{status.value}")
