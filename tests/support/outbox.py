"""Record a notification event for a payment directly, as a test sets the scene.

The service writes events only through `services.changes` (with the change that causes
them); tests that are about delivery, listing or signing make one without a change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from reconciler.adapters import repository
from reconciler.adapters.models import NotificationDelivery, NotificationEvent, Payment
from reconciler.domain.delivery import (
    DeliveryPolicy,
    DeliveryStatus,
    first_attempt_at,
    give_up_deadline,
)
from reconciler.domain.times import rfc3339
from reconciler.services.ids import new_id


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
