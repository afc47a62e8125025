"""The notification outbox: record a payment's event and its deliveries; load and store attempts.

Events and their deliveries are written by `services.changes` in the transaction that
changes the payment, so no change commits without its notification and a crash loses
none. Deliveries are then rows due
at a time, attempted by the engine: `delivery_job` says what to send, `services.delivery`
keeps what `domain.delivery.decide_delivery` decided.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from reconciler.adapters import repository
from reconciler.adapters.models import (
    NotificationEvent,
    WebhookEndpoint,
)
from reconciler.domain.delivery import (
    DeliveryStatus,
)

log = logging.getLogger(__name__)


def signing_secrets(endpoint: WebhookEndpoint | Any, now: datetime) -> tuple[str, ...]:
    """The secrets a delivery is signed with: the current one, and the previous one for 24 h."""
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and now < expires:
        return (endpoint.secret, endpoint.previous_secret)
    return (endpoint.secret,)


@dataclass(frozen=True)
class DeliveryJob:
    """Everything one attempt needs: where, what, and the secrets to sign with."""

    delivery_id: str
    endpoint_id: str
    payment_id: str
    event_id: str  # the `webhook-id`, the same on every attempt
    url: str
    body: bytes
    secrets: tuple[str, ...]


def event_body(event: NotificationEvent | Any) -> bytes:
    """Serialise an event's payload as it is sent and signed."""
    return json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False).encode()


def delivery_job(session: Session, delivery_id: str, *, now: datetime) -> DeliveryJob | None:
    """Load what to send for a pending delivery; None when there is nothing to attempt."""
    found = repository.delivery_target(session, delivery_id)
    if found is None or found.delivery_status != DeliveryStatus.PENDING.value:
        return None
    if found.endpoint_status != "enabled" or found.deleted_at is not None:
        return None  # switched off while the row was due: its store fails it
    return DeliveryJob(
        delivery_id=delivery_id,
        endpoint_id=found.endpoint_id,
        payment_id=found.payment_id,
        event_id=found.event_id,
        url=found.url,
        body=event_body(found),
        secrets=signing_secrets(found, now),
    )


def disable_endpoint(session: Session, endpoint_id: str, *, reason: str, now: datetime) -> None:
    """Disable an endpoint and fail its pending deliveries (`recover` revives them)."""
    endpoint = repository.endpoint_for_update(session, endpoint_id)
    if endpoint is None:
        return
    endpoint.status = "disabled"
    endpoint.disabled_reason = reason
    endpoint.updated_at = now
    repository.halt_pending_deliveries(session, endpoint_id, reason=f"endpoint disabled: {reason}")
