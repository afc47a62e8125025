"""The notification outbox: record a payment's event and its deliveries; load and store attempts.

`record_payment_event` runs in the transaction that changes the payment, so no change
commits without its notification and a crash loses none. Deliveries are then rows due
at a time, attempted by the engine: `delivery_job` says what to send, `store_attempt`
keeps what `domain.delivery.decide_delivery` decided.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from reconciler.adapters import repository, wakeups
from reconciler.adapters.models import (
    NotificationDelivery,
    NotificationEvent,
    Payment,
    WebhookEndpoint,
)
from reconciler.domain.delivery import (
    DeliveryPolicy,
    DeliveryStatus,
    DeliveryUpdate,
    first_attempt_at,
    give_up_deadline,
)
from reconciler.domain.times import rfc3339
from reconciler.services.ids import new_id

log = logging.getLogger(__name__)


def record_payment_event(
    session: Session,
    payment: Payment,
    event_type: str,
    *,
    now: datetime,
    resource: dict[str, Any],
    policy: DeliveryPolicy,
) -> NotificationEvent:
    """Write the payment's next event and one due delivery per matching enabled endpoint.

    The caller holds the payment's row lock and commits; `resource` is the payment as
    `GET /v1/payments/{id}` shows it after the change.
    """
    payment.notification_sequence = (payment.notification_sequence or 0) + 1
    event_id = new_id("evt")
    event = NotificationEvent(
        id=event_id,
        payment_id=payment.id,
        merchant_id=payment.merchant_id,
        type=event_type,
        sequence=payment.notification_sequence,
        created_at=now,
        payload={
            "id": event_id,
            "type": event_type,
            "created_at": rfc3339(now),
            "sequence": payment.notification_sequence,
            "data": resource,
        },
    )
    session.add(event)
    for endpoint in repository.enabled_endpoints(session, payment.merchant_id):
        if event_type in endpoint.events:
            session.add(
                NotificationDelivery(
                    id=new_id("del"),
                    event_id=event_id,
                    endpoint_id=endpoint.id,
                    status=DeliveryStatus.PENDING.value,
                    attempts=0,
                    next_attempt_at=first_attempt_at(policy, now),
                    created_at=now,
                    give_up_at=give_up_deadline(policy, now),
                )
            )
    return event


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


def store_attempt(
    session: Session, delivery: NotificationDelivery, update: DeliveryUpdate, *, now: datetime
) -> None:
    """Keep one attempt's decision on the row (lease cleared); disable the endpoint if told."""
    delivery.status = update.status.value
    delivery.attempts = update.attempts
    delivery.next_attempt_at = update.next_attempt_at
    delivery.last_attempt_at = update.last_attempt_at
    delivery.last_response_status = update.last_response_status
    delivery.last_error = update.last_error
    delivery.last_delay_s = update.last_delay_s
    delivery.delivered_at = update.delivered_at
    delivery.lease_owner = None
    delivery.lease_expires_at = None
    wakeups.note_due(session, update.next_attempt_at)
    if update.disable_endpoint is not None:
        disable_endpoint(session, delivery.endpoint_id, reason=update.disable_endpoint, now=now)


def disable_endpoint(session: Session, endpoint_id: str, *, reason: str, now: datetime) -> None:
    """Disable an endpoint and fail its pending deliveries (`recover` revives them)."""
    endpoint = repository.endpoint_for_update(session, endpoint_id)
    if endpoint is None:
        return
    endpoint.status = "disabled"
    endpoint.disabled_reason = reason
    endpoint.updated_at = now
    repository.halt_pending_deliveries(session, endpoint_id, reason=f"endpoint disabled: {reason}")
