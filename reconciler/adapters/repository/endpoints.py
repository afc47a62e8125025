"""Merchants' webhook endpoints, notification events and deliveries."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Row,
    bindparam,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from reconciler.adapters.models import (
    Merchant,
    NotificationDelivery,
    NotificationEvent,
    WebhookEndpoint,
)
from reconciler.adapters.repository._common import (
    deliveries_table,
    dialect,
    endpoints_table,
)


def enabled_endpoints(session: Session, merchant_id: str) -> Sequence[WebhookEndpoint]:
    """The merchant's endpoints that receive notifications (enabled, not deleted).

    `FOR KEY SHARE` waits for a concurrent disable or delete (which holds `FOR UPDATE`
    while it fails the pending deliveries) and then re-reads the row, so no delivery is
    added to an endpoint that has just been switched off. Shared locks do not block each
    other: concurrent events of one merchant do not queue.
    """
    stmt = (
        select(WebhookEndpoint)
        .where(
            WebhookEndpoint.merchant_id == merchant_id,
            WebhookEndpoint.status == "enabled",
            WebhookEndpoint.deleted_at.is_(None),
        )
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        .with_for_update(read=True, key_share=True)
    )
    return session.scalars(stmt).all()


def merchant_endpoints(session: Session, merchant_id: str) -> Sequence[WebhookEndpoint]:
    """Every endpoint the merchant has not deleted, oldest first."""
    stmt = select(WebhookEndpoint).where(
        WebhookEndpoint.merchant_id == merchant_id, WebhookEndpoint.deleted_at.is_(None)
    )
    return session.scalars(stmt.order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)).all()


def count_merchant_endpoints(session: Session, merchant_id: str, *, lock: bool = False) -> int:
    """How many endpoints the merchant has not deleted; `lock` holds the merchant's row
    (on PostgreSQL) so two registrations at once cannot both pass a limit."""
    if lock:
        session.execute(select(Merchant.id).where(Merchant.id == merchant_id).with_for_update())
    stmt = select(func.count()).where(
        WebhookEndpoint.merchant_id == merchant_id, WebhookEndpoint.deleted_at.is_(None)
    )
    return int(session.scalar(stmt) or 0)


def merchant_endpoint(
    session: Session, merchant_id: str, endpoint_id: str, *, for_update: bool = False
) -> WebhookEndpoint | None:
    """One of the merchant's endpoints, unless deleted (another merchant's is None too)."""
    stmt = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id,
        WebhookEndpoint.merchant_id == merchant_id,
        WebhookEndpoint.deleted_at.is_(None),
    )
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.scalars(stmt).first()


def endpoint_for_update(session: Session, endpoint_id: str) -> WebhookEndpoint | None:
    """Load an endpoint whatever its merchant and lock its row until the transaction ends."""
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).with_for_update()
    return session.scalars(stmt.execution_options(populate_existing=True)).first()


DeliveryListing = tuple[NotificationDelivery, str, str]  # (delivery, event type, payment id)


def encode_delivery_cursor(delivery: NotificationDelivery) -> str:
    """Make the cursor of the page that follows `delivery` (read by `decode_cursor`)."""
    raw = f"{delivery.created_at.isoformat()}|{delivery.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def endpoint_deliveries(
    session: Session,
    endpoint_id: str,
    *,
    status: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[DeliveryListing]:
    """Page through an endpoint's deliveries with their event's type and payment, newest first."""
    stmt = (
        select(NotificationDelivery, NotificationEvent.type, NotificationEvent.payment_id)
        .join(NotificationEvent, NotificationEvent.id == NotificationDelivery.event_id)
        .where(NotificationDelivery.endpoint_id == endpoint_id)
    )
    if status:
        stmt = stmt.where(NotificationDelivery.status == status)
    if after is not None:
        stmt = stmt.where(
            tuple_(NotificationDelivery.created_at, NotificationDelivery.id) < tuple_(*after)
        )
    stmt = stmt.order_by(NotificationDelivery.created_at.desc(), NotificationDelivery.id.desc())
    return [(d, t, p) for d, t, p in session.execute(stmt.limit(limit))]


def endpoint_delivery(
    session: Session, endpoint_id: str, delivery_id: str, *, for_update: bool = False
) -> DeliveryListing | None:
    """One delivery of the endpoint, with its event's type and payment."""
    stmt = (
        select(NotificationDelivery, NotificationEvent.type, NotificationEvent.payment_id)
        .join(NotificationEvent, NotificationEvent.id == NotificationDelivery.event_id)
        .where(
            NotificationDelivery.id == delivery_id, NotificationDelivery.endpoint_id == endpoint_id
        )
    )
    if for_update:
        stmt = stmt.with_for_update(of=NotificationDelivery).execution_options(
            populate_existing=True
        )
    row = session.execute(stmt).first()
    return None if row is None else (row[0], row[1], row[2])


_TARGET = (
    select(
        NotificationDelivery.status.label("delivery_status"),
        NotificationEvent.id.label("event_id"),
        NotificationEvent.payment_id,
        NotificationEvent.payload,
        WebhookEndpoint.id.label("endpoint_id"),
        WebhookEndpoint.status.label("endpoint_status"),
        WebhookEndpoint.deleted_at,
        WebhookEndpoint.url,
        WebhookEndpoint.secret,
        WebhookEndpoint.previous_secret,
        WebhookEndpoint.previous_secret_expires_at,
    )
    .join(NotificationEvent, NotificationEvent.id == NotificationDelivery.event_id)
    .join(WebhookEndpoint, WebhookEndpoint.id == NotificationDelivery.endpoint_id)
    .where(NotificationDelivery.id == bindparam("delivery_id"))
)


def delivery_target(session: Session, delivery_id: str) -> Row[Any] | None:
    """What an attempt needs, in one row: the delivery's status, its event's payload, and
    its endpoint's state, address and (sealed) secrets."""
    return session.connection().execute(_TARGET, {"delivery_id": delivery_id}).first()


_LEASED = (
    select(
        NotificationDelivery.status,
        NotificationDelivery.attempts,
        NotificationDelivery.last_delay_s,
        NotificationDelivery.give_up_at,
        NotificationDelivery.endpoint_id,
        NotificationDelivery.event_id,
        WebhookEndpoint.status.label("endpoint_status"),
        WebhookEndpoint.disabled_reason,
        WebhookEndpoint.deleted_at,
        WebhookEndpoint.failing_since,
        WebhookEndpoint.last_error.label("endpoint_error"),
    )
    .join(WebhookEndpoint, WebhookEndpoint.id == NotificationDelivery.endpoint_id)
    .where(
        NotificationDelivery.id == bindparam("delivery_id"),
        NotificationDelivery.lease_owner == bindparam("owner"),
    )
)
# PostgreSQL locks the endpoint with the delivery, before the delivery changes: a store
# that locked the endpoint only afterwards would deadlock another store of that endpoint
# (the delivery's update re-checks its foreign key with KEY SHARE on the endpoint).
_LEASED_LOCKED = _LEASED.with_for_update()


def leased_attempt(session: Session, delivery_id: str, owner: str) -> Row[Any] | None:
    """A delivery still leased to `owner`, with its endpoint's state, both locked; else None."""
    stmt = _LEASED_LOCKED if dialect(session) == "postgresql" else _LEASED
    params = {"delivery_id": delivery_id, "owner": owner}
    return cast(Row[Any] | None, session.connection().execute(stmt, params).first())


def finish_attempt(session: Session, delivery_id: str, values: dict[str, Any]) -> None:
    """Store an attempt's (or a hold's) result on the delivery and give its lease back."""
    stmt = (
        update(deliveries_table)
        .where(deliveries_table.c.id == delivery_id)
        .values(**values, lease_owner=None, lease_expires_at=None)
    )
    session.connection().execute(stmt)


def note_endpoint_health(session: Session, endpoint_id: str, values: dict[str, Any]) -> None:
    """Keep an endpoint's last error and since when it fails."""
    session.connection().execute(
        update(endpoints_table).where(endpoints_table.c.id == endpoint_id).values(**values)
    )


def halt_pending_deliveries(session: Session, endpoint_id: str, *, reason: str) -> int:
    """Fail every pending delivery of an endpoint (deleted or disabled); return how many.

    Rows locked by a store in progress are skipped (on PostgreSQL): that store holds its
    row and waits for the endpoint this caller holds, so waiting for it would deadlock;
    it fails its delivery itself once it sees the endpoint switched off.
    """
    halted = select(deliveries_table.c.id).where(
        deliveries_table.c.endpoint_id == endpoint_id, deliveries_table.c.status == "pending"
    )
    if dialect(session) == "postgresql":
        halted = halted.with_for_update(skip_locked=True)
    result = session.execute(
        update(deliveries_table)
        .where(deliveries_table.c.id.in_(halted.scalar_subquery()))
        .values(
            status="failed",
            next_attempt_at=None,
            last_error=reason,
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def revive_failed_deliveries(
    session: Session, endpoint_id: str, *, since: datetime, now: datetime, give_up_at: datetime
) -> int:
    """Make every failed delivery of an endpoint created since `since` due now; return how many."""
    result = session.execute(
        update(deliveries_table)
        .where(
            deliveries_table.c.endpoint_id == endpoint_id,
            deliveries_table.c.status == "failed",
            deliveries_table.c.created_at >= since,
        )
        .values(
            status="pending",
            next_attempt_at=now,
            give_up_at=give_up_at,
            last_delay_s=None,
            lease_owner=None,
            lease_expires_at=None,
            requested_at=now,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def event_payment_id(session: Session, event_id: str) -> str | None:
    """The payment an event is about (for log lines)."""
    stmt = select(NotificationEvent.payment_id).where(NotificationEvent.id == event_id)
    return session.scalar(stmt)
