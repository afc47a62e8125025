"""Notifications, for operators: every merchant's endpoints and deliveries at once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    Table,
    delete,
    func,
    select,
    tuple_,
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
)

EndpointHealth = tuple[WebhookEndpoint, int, int]  # (endpoint, pending, failed deliveries)
OperatorDelivery = tuple[NotificationDelivery, str, str, str]  # (+ type, payment, merchant)


def _with_health(status: str | None) -> Any:
    """Endpoints (not deleted, of `status`: disabled / failing / any) with their pending and
    failed deliveries."""
    pending = func.count().filter(NotificationDelivery.status == "pending")
    failed = func.count().filter(NotificationDelivery.status == "failed")
    stmt = (
        select(WebhookEndpoint, pending, failed)
        .outerjoin(NotificationDelivery, NotificationDelivery.endpoint_id == WebhookEndpoint.id)
        .where(WebhookEndpoint.deleted_at.is_(None))
        .group_by(WebhookEndpoint.id)
    )
    if status == "disabled":
        return stmt.where(WebhookEndpoint.status == "disabled")
    if status == "failing":
        return stmt.where(
            WebhookEndpoint.status == "enabled", WebhookEndpoint.failing_since.is_not(None)
        )
    return stmt


def endpoints_by_health(
    session: Session, *, status: str | None, limit: int
) -> list[EndpointHealth]:
    """Endpoints of every merchant, with their pending and failed deliveries.

    `disabled`: switched off (by the merchant, a 410 or the failing period); `failing`:
    enabled, with every attempt failing since `failing_since`. Longest failing first.
    """
    stmt = _with_health(status)
    stmt = stmt.order_by(
        WebhookEndpoint.failing_since.is_(None),
        WebhookEndpoint.failing_since,
        WebhookEndpoint.updated_at.desc(),
        WebhookEndpoint.id,
    )
    return [(e, int(p), int(f)) for e, p, f in session.execute(stmt.limit(limit))]


def endpoints_by_merchant(
    session: Session, *, status: str | None, limit: int, after: tuple[str, str] | None
) -> list[EndpointHealth]:
    """One page of every merchant's endpoints, by merchant then id (keyset: `after` is the
    last row's (merchant id, endpoint id)), with their pending and failed deliveries."""
    stmt = _with_health(status)
    if after is not None:
        stmt = stmt.where(tuple_(WebhookEndpoint.merchant_id, WebhookEndpoint.id) > tuple_(*after))
    stmt = stmt.order_by(WebhookEndpoint.merchant_id, WebhookEndpoint.id)
    return [(e, int(p), int(f)) for e, p, f in session.execute(stmt.limit(limit))]


def live_endpoint_ids(session: Session, endpoint_ids: Sequence[str]) -> set[str]:
    """Those of these endpoints that exist and are not deleted."""
    if not endpoint_ids:
        return set()
    stmt = select(WebhookEndpoint.id).where(
        WebhookEndpoint.id.in_(endpoint_ids), WebhookEndpoint.deleted_at.is_(None)
    )
    return set(session.scalars(stmt))


def all_deliveries(
    session: Session,
    *,
    status: str | None,
    endpoint_id: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
    payment_id: str | None = None,
) -> list[OperatorDelivery]:
    """Page through every merchant's deliveries (or one payment's), newest first."""
    stmt = select(
        NotificationDelivery,
        NotificationEvent.type,
        NotificationEvent.payment_id,
        NotificationEvent.merchant_id,
    ).join(NotificationEvent, NotificationEvent.id == NotificationDelivery.event_id)
    if status:
        stmt = stmt.where(NotificationDelivery.status == status)
    if endpoint_id:
        stmt = stmt.where(NotificationDelivery.endpoint_id == endpoint_id)
    if payment_id:
        stmt = stmt.where(NotificationEvent.payment_id == payment_id)
    if after is not None:
        stmt = stmt.where(
            tuple_(NotificationDelivery.created_at, NotificationDelivery.id) < tuple_(*after)
        )
    stmt = stmt.order_by(NotificationDelivery.created_at.desc(), NotificationDelivery.id.desc())
    return [(d, t, p, m) for d, t, p, m in session.execute(stmt.limit(limit))]


def endpoint_outcomes(session: Session, endpoint_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Each endpoint's deliveries attempted at least once, and delivered: (attempted, delivered)."""
    if not endpoint_ids:
        return {}
    attempted = func.count().filter(NotificationDelivery.attempts > 0)
    delivered = func.count().filter(NotificationDelivery.status == "delivered")
    stmt = (
        select(NotificationDelivery.endpoint_id, attempted, delivered)
        .where(NotificationDelivery.endpoint_id.in_(endpoint_ids))
        .group_by(NotificationDelivery.endpoint_id)
    )
    return {e: (int(a), int(d)) for e, a, d in session.execute(stmt)}


def endpoint_owner(session: Session, endpoint_id: str) -> Merchant | None:
    """The merchant whose endpoint (not deleted) this is."""
    stmt = (
        select(Merchant)
        .join(WebhookEndpoint, WebhookEndpoint.merchant_id == Merchant.id)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.deleted_at.is_(None))
    )
    return session.scalars(stmt).first()


def merchant_names(session: Session, merchant_ids: Sequence[str]) -> dict[str, str]:
    """The names of these merchants, by id."""
    if not merchant_ids:
        return {}
    stmt = select(Merchant.id, Merchant.name).where(Merchant.id.in_(merchant_ids))
    return {merchant_id: name for merchant_id, name in session.execute(stmt)}


def delivery_counts(session: Session) -> dict[str, int]:
    """How many deliveries are in each status."""
    stmt = select(NotificationDelivery.status, func.count()).group_by(NotificationDelivery.status)
    return {status: int(count) for status, count in session.execute(stmt)}


def delivery_attempts(session: Session) -> dict[str, int]:
    """How many attempts the deliveries in each status have taken."""
    stmt = select(
        NotificationDelivery.status, func.coalesce(func.sum(NotificationDelivery.attempts), 0)
    ).group_by(NotificationDelivery.status)
    return {status: int(total) for status, total in session.execute(stmt)}


def due_deliveries(session: Session, now: datetime) -> int:
    """How many pending deliveries are due (their attempt time has come)."""
    stmt = (
        select(func.count())
        .select_from(NotificationDelivery)
        .where(NotificationDelivery.next_attempt_at <= now)
    )
    return int(session.scalar(stmt) or 0)


def oldest_undelivered_created_at(session: Session) -> datetime | None:
    """When the oldest pending delivery was created."""
    stmt = select(func.min(NotificationDelivery.created_at)).where(
        NotificationDelivery.status == "pending"
    )
    value: datetime | None = session.scalar(stmt)
    if value is not None and value.tzinfo is None:  # SQLite's MIN() loses the column type
        value = value.replace(tzinfo=UTC)
    return value


def endpoint_counts(session: Session) -> dict[str, int]:
    """How many endpoints (not deleted) are enabled, disabled, and enabled but failing."""
    stmt = (
        select(WebhookEndpoint.status, func.count())
        .where(WebhookEndpoint.deleted_at.is_(None))
        .group_by(WebhookEndpoint.status)
    )
    counts = {status: int(count) for status, count in session.execute(stmt)}
    failing = select(func.count()).where(
        WebhookEndpoint.deleted_at.is_(None),
        WebhookEndpoint.status == "enabled",
        WebhookEndpoint.failing_since.is_not(None),
    )
    counts["failing"] = int(session.scalar(failing) or 0)
    return counts


def delete_settled_deliveries(session: Session, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` delivered or failed deliveries created before `before`."""
    oldest = (
        select(deliveries_table.c.id)
        .where(
            deliveries_table.c.status.in_(("delivered", "failed")),
            deliveries_table.c.created_at < before,
        )
        .order_by(deliveries_table.c.created_at)
        .limit(limit)
    )
    result = session.execute(
        delete(deliveries_table).where(deliveries_table.c.id.in_(oldest.scalar_subquery()))
    )
    return int(getattr(result, "rowcount", 0) or 0)


def delete_events_without_deliveries(session: Session, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` events created before `before` that no delivery refers to."""
    events = cast(Table, NotificationEvent.__table__)
    orphaned = (
        select(events.c.id)
        .where(
            events.c.created_at < before,
            ~select(deliveries_table.c.id)
            .where(deliveries_table.c.event_id == events.c.id)
            .exists(),
        )
        .limit(limit)
    )
    result = session.execute(delete(events).where(events.c.id.in_(orphaned.scalar_subquery())))
    return int(getattr(result, "rowcount", 0) or 0)
