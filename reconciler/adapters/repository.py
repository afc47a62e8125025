"""Every query the service makes. Callers name an intent; only this module builds SQL.

Longer than most modules on purpose: every query the service makes is here (STYLE).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    Row,
    Select,
    Table,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reconciler.adapters.models import (
    Merchant,
    NotificationDelivery,
    NotificationEvent,
    Payment,
    PaymentEvent,
    SweepHeartbeat,
    WebhookEndpoint,
    WebhookInbox,
)

payments = cast(Table, Payment.__table__)
inbox = cast(Table, WebhookInbox.__table__)


@dataclass(frozen=True)
class Queue:
    """A table the backoff engine drives: due rows by `due`, leased by owner and expiry."""

    name: str
    table: Table
    due: str  # the column holding when the row is next due
    returning: tuple[str, ...]  # what a claim hands to the kind

    def column(self, name: str) -> Any:
        return self.table.c[name]


PAYMENT_POLLS = Queue(
    name="payment_polls",
    table=payments,
    due="next_poll_at",
    returning=(
        "id",
        "gateway",
        "gateway_payment_id",
        "amount",
        "currency",
        "merchant_reference",
        "idempotency_key",
    ),
)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def due_query(
    now: datetime, limit: int, *, skip_locked: bool, queue: Queue = PAYMENT_POLLS
) -> Select[tuple[str]]:
    """Select the ids of up to `limit` due, unleased rows, oldest due first.

    `due <= now` lets the planner use the queue's partial index (`ix_payments_due` for
    payments), so the cost follows the due rows, not the table (a test checks the plan
    on PostgreSQL).
    """
    due_column = queue.column(queue.due)
    lease = queue.column("lease_expires_at")
    due = (
        select(queue.column("id"))
        .where(due_column <= now)
        .where(or_(lease.is_(None), lease < now))
        .order_by(due_column)
        .limit(limit)
    )
    return due.with_for_update(skip_locked=True) if skip_locked else due


def claim_due(
    session: Session,
    queue: Queue,
    *,
    now: datetime,
    limit: int,
    owner: str,
    lease_until: datetime,
) -> list[Row[Any]]:
    """Lease up to `limit` due rows of a queue to `owner` in one statement, oldest first.

    `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`: on PostgreSQL
    concurrent sweepers skip each other's rows; on SQLite the statement runs under the
    database write lock, so it is atomic too. An expired lease is fair game: its sweeper
    died or stalled, and its result will be refused when it comes back.
    """
    if limit <= 0:
        return []
    due = due_query(now, limit, skip_locked=_dialect(session) == "postgresql", queue=queue)
    stmt = (
        update(queue.table)
        .where(queue.column("id").in_(due.scalar_subquery()))
        .values(lease_owner=owner, lease_expires_at=lease_until)
        .returning(*(queue.column(name) for name in queue.returning))
    )
    return list(session.execute(stmt))


def earliest_due(session: Session, queue: Queue, now: datetime) -> datetime | None:
    """Return when the queue's next unleased row is due (an index-ordered MIN)."""
    due_column = queue.column(queue.due)
    lease = queue.column("lease_expires_at")
    stmt = (
        select(func.min(due_column))
        .where(due_column.is_not(None))
        .where(or_(lease.is_(None), lease < now))
    )
    value = session.scalar(stmt)
    if value is not None and value.tzinfo is None:  # SQLite's MIN() loses the column type
        value = value.replace(tzinfo=UTC)
    return cast(datetime | None, value)


def release_lease(session: Session, queue: Queue, row_id: str, owner: str) -> bool:
    """Give a row's lease back; False when `owner` no longer holds it (it expired, or
    another sweeper took the row). On PostgreSQL the row stays locked until commit."""
    stmt = (
        update(queue.table)
        .where(queue.column("id") == row_id, queue.column("lease_owner") == owner)
        .values(lease_owner=None, lease_expires_at=None)
    )
    result = session.execute(stmt)
    return bool(getattr(result, "rowcount", 0))


def merchant_by_key_hash(
    session: Session, key_hash: str, now: datetime | None = None
) -> Merchant | None:
    """Find the merchant whose key, or (before `now` passes its expiry) previous key, this is."""
    match = Merchant.api_key_hash == key_hash
    if now is not None:
        previous = and_(
            Merchant.previous_key_hash == key_hash, Merchant.previous_key_expires_at > now
        )
        match = or_(match, previous)
    return session.scalars(select(Merchant).where(match)).first()


def merchants_named(session: Session, name_or_id: str) -> list[Merchant]:
    """Find merchants by id, or else by name."""
    by_id = session.get(Merchant, name_or_id)
    if by_id is not None:
        return [by_id]
    return list(session.scalars(select(Merchant).where(Merchant.name == name_or_id)))


def all_merchants(session: Session) -> list[Merchant]:
    """List every merchant, oldest first."""
    return list(session.scalars(select(Merchant).order_by(Merchant.created_at, Merchant.id)))


def payment_for_update(session: Session, payment_id: str) -> Payment | None:
    """Load a payment and lock its row until the transaction ends."""
    stmt = select(Payment).where(Payment.id == payment_id).with_for_update()
    return session.scalars(stmt.execution_options(populate_existing=True)).first()


def merchant_payment(
    session: Session, merchant_id: str, payment_id: str, *, for_update: bool = False
) -> Payment | None:
    stmt = select(Payment).where(Payment.id == payment_id, Payment.merchant_id == merchant_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.scalars(stmt).first()


def any_payment(session: Session, payment_id: str, *, for_update: bool = False) -> Payment | None:
    """Load a payment whatever its merchant (admin use)."""
    stmt = select(Payment).where(Payment.id == payment_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.scalars(stmt).first()


def payment_by_reference(session: Session, merchant_id: str, reference: str) -> Payment | None:
    stmt = select(Payment).where(
        Payment.merchant_id == merchant_id, Payment.merchant_reference == reference
    )
    return session.scalars(stmt).first()


def payment_by_gateway_id(
    session: Session, gateway: str, gateway_payment_id: str, *, for_update: bool = False
) -> Payment | None:
    stmt = select(Payment).where(
        Payment.gateway == gateway, Payment.gateway_payment_id == gateway_payment_id
    )
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.scalars(stmt).first()


def encode_cursor(payment: Payment) -> str:
    raw = f"{payment.created_at.isoformat()}|{payment.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Read a cursor made by `encode_cursor`; raises ValueError when it is not one."""
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        created, _, pid = base64.urlsafe_b64decode(padded).decode().partition("|")
        when = datetime.fromisoformat(created)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("malformed cursor") from exc
    if when.tzinfo is None or not pid or not (pid.isascii() and pid.isprintable()):
        raise ValueError("malformed cursor")  # (a NUL would reach PostgreSQL as a DataError)
    return when, pid


def list_payments(
    session: Session,
    merchant_id: str | None,
    *,
    status: str | None,
    gateway: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
    sync_state: str | None = None,
) -> Sequence[Payment]:
    """Page through payments (one merchant's, or all for admins), newest first."""
    stmt = select(Payment)
    if merchant_id is not None:
        stmt = stmt.where(Payment.merchant_id == merchant_id)
    if sync_state:
        stmt = stmt.where(Payment.sync_state == sync_state)
    if status:
        stmt = stmt.where(Payment.status == status)
    if gateway:
        stmt = stmt.where(Payment.gateway == gateway)
    if after is not None:
        stmt = stmt.where(tuple_(Payment.created_at, Payment.id) < tuple_(*after))
    stmt = stmt.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(limit)
    return session.scalars(stmt).all()


def payment_events(session: Session, payment_id: str) -> Sequence[PaymentEvent]:
    stmt = select(PaymentEvent).where(PaymentEvent.payment_id == payment_id)
    return session.scalars(stmt.order_by(PaymentEvent.id)).all()


def insert_inbox(session: Session, values: dict[str, Any]) -> int | None:
    """Store a webhook in the inbox once; None when this gateway event id or the same raw
    body is already there (a replay under a new, unsigned event id is a duplicate too)."""
    insert = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
    # Values go in as parameters, so the compiled statement is cached across deliveries.
    # No conflict target: either unique key, (gateway, event id) or (gateway, body hash).
    stmt = insert(inbox).on_conflict_do_nothing().returning(inbox.c.id)
    return session.execute(stmt, values).scalar_one_or_none()


def mark_inbox_applied(
    session: Session, entry_id: int, *, payment_id: str, outcome: str, now: datetime
) -> None:
    """Record which payment a stored webhook was applied to, and how."""
    session.execute(
        update(inbox)
        .where(inbox.c.id == entry_id)
        .values(payment_id=payment_id, outcome=outcome, processed_at=now)
    )


def orphan_webhooks(
    session: Session, gateway: str, gateway_payment_id: str
) -> Sequence[WebhookInbox]:
    """Events that arrived before their payment was registered, in arrival order."""
    stmt = (
        select(WebhookInbox)
        .where(
            WebhookInbox.gateway == gateway,
            WebhookInbox.gateway_payment_id == gateway_payment_id,
            WebhookInbox.payment_id.is_(None),
        )
        .order_by(WebhookInbox.id)
    )
    return session.scalars(stmt).all()


def delete_processed_inbox(session: Session, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` processed inbox entries received before `before`."""
    oldest = (
        select(inbox.c.id)
        .where(inbox.c.processed_at.is_not(None), inbox.c.received_at < before)
        .order_by(inbox.c.id)
        .limit(limit)
    )
    result = session.execute(delete(inbox).where(inbox.c.id.in_(oldest.scalar_subquery())))
    return int(getattr(result, "rowcount", 0) or 0)


def record_heartbeat(session: Session, owner: str, now: datetime, claimed: int) -> None:
    row = session.get(SweepHeartbeat, owner)
    if row is None:
        session.add(SweepHeartbeat(owner=owner, finished_at=now, claimed=claimed))
    else:
        row.finished_at = now
        row.claimed = claimed


def last_sweep_at(session: Session) -> datetime | None:
    return session.scalar(select(func.max(SweepHeartbeat.finished_at)))


def count_by_sync_state(session: Session) -> dict[str, int]:
    stmt = select(Payment.sync_state, func.count()).group_by(Payment.sync_state)
    return {state: count for state, count in session.execute(stmt)}


def due_backlog(session: Session, now: datetime) -> int:
    stmt = select(func.count()).select_from(Payment).where(Payment.next_poll_at <= now)
    return session.scalar(stmt) or 0


def oldest_pending_created_at(session: Session) -> datetime | None:
    return session.scalar(select(func.min(Payment.created_at)).where(Payment.status == "pending"))


def ping(session: Session) -> Row[Any] | None:
    return session.execute(select(1)).first()


# --- Outbound notifications: endpoints, events, deliveries -------------------------------

deliveries = cast(Table, NotificationDelivery.__table__)


DELIVERIES = Queue(
    name="deliveries",
    table=deliveries,
    due="next_attempt_at",
    returning=("id", "endpoint_id", "event_id"),
)


def delivery_for_update(session: Session, delivery_id: str) -> NotificationDelivery | None:
    """Load a delivery and lock its row until the transaction ends."""
    stmt = select(NotificationDelivery).where(NotificationDelivery.id == delivery_id)
    stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.scalars(stmt).first()


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


def delivery_with_target(
    session: Session, delivery_id: str
) -> tuple[NotificationDelivery, NotificationEvent, WebhookEndpoint] | None:
    """A delivery with the event it carries and the endpoint it goes to."""
    stmt = (
        select(NotificationDelivery, NotificationEvent, WebhookEndpoint)
        .join(NotificationEvent, NotificationEvent.id == NotificationDelivery.event_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == NotificationDelivery.endpoint_id)
        .where(NotificationDelivery.id == delivery_id)
    )
    row = session.execute(stmt).first()
    return None if row is None else (row[0], row[1], row[2])


def halt_pending_deliveries(session: Session, endpoint_id: str, *, reason: str) -> int:
    """Fail every pending delivery of an endpoint (deleted or disabled); return how many.

    Rows locked by a store in progress are skipped (on PostgreSQL): that store holds its
    row and waits for the endpoint this caller holds, so waiting for it would deadlock;
    it fails its delivery itself once it sees the endpoint switched off.
    """
    halted = select(deliveries.c.id).where(
        deliveries.c.endpoint_id == endpoint_id, deliveries.c.status == "pending"
    )
    if _dialect(session) == "postgresql":
        halted = halted.with_for_update(skip_locked=True)
    result = session.execute(
        update(deliveries)
        .where(deliveries.c.id.in_(halted.scalar_subquery()))
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
        update(deliveries)
        .where(
            deliveries.c.endpoint_id == endpoint_id,
            deliveries.c.status == "failed",
            deliveries.c.created_at >= since,
        )
        .values(
            status="pending",
            next_attempt_at=now,
            give_up_at=give_up_at,
            last_delay_s=None,
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def event_payment_id(session: Session, event_id: str) -> str | None:
    """The payment an event is about (for log lines)."""
    stmt = select(NotificationEvent.payment_id).where(NotificationEvent.id == event_id)
    return session.scalar(stmt)


# --- Notifications, for operators: every merchant at once --------------------------------

EndpointHealth = tuple[WebhookEndpoint, int, int]  # (endpoint, pending, failed deliveries)
OperatorDelivery = tuple[NotificationDelivery, str, str, str]  # (+ type, payment, merchant)


def endpoints_by_health(
    session: Session, *, status: str | None, limit: int
) -> list[EndpointHealth]:
    """Endpoints of every merchant, with their pending and failed deliveries.

    `disabled`: switched off (by the merchant, a 410 or the failing period); `failing`:
    enabled, with every attempt failing since `failing_since`. Longest failing first.
    """
    pending = func.count().filter(NotificationDelivery.status == "pending")
    failed = func.count().filter(NotificationDelivery.status == "failed")
    stmt = (
        select(WebhookEndpoint, pending, failed)
        .outerjoin(NotificationDelivery, NotificationDelivery.endpoint_id == WebhookEndpoint.id)
        .where(WebhookEndpoint.deleted_at.is_(None))
        .group_by(WebhookEndpoint.id)
    )
    if status == "disabled":
        stmt = stmt.where(WebhookEndpoint.status == "disabled")
    elif status == "failing":
        stmt = stmt.where(
            WebhookEndpoint.status == "enabled", WebhookEndpoint.failing_since.is_not(None)
        )
    stmt = stmt.order_by(
        WebhookEndpoint.failing_since.is_(None),
        WebhookEndpoint.failing_since,
        WebhookEndpoint.updated_at.desc(),
        WebhookEndpoint.id,
    )
    return [(e, int(p), int(f)) for e, p, f in session.execute(stmt.limit(limit))]


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
        select(deliveries.c.id)
        .where(deliveries.c.status.in_(("delivered", "failed")), deliveries.c.created_at < before)
        .order_by(deliveries.c.created_at)
        .limit(limit)
    )
    result = session.execute(
        delete(deliveries).where(deliveries.c.id.in_(oldest.scalar_subquery()))
    )
    return int(getattr(result, "rowcount", 0) or 0)


def delete_events_without_deliveries(session: Session, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` events created before `before` that no delivery refers to."""
    events = cast(Table, NotificationEvent.__table__)
    orphaned = (
        select(events.c.id)
        .where(
            events.c.created_at < before,
            ~select(deliveries.c.id).where(deliveries.c.event_id == events.c.id).exists(),
        )
        .limit(limit)
    )
    result = session.execute(delete(events).where(events.c.id.in_(orphaned.scalar_subquery())))
    return int(getattr(result, "rowcount", 0) or 0)


def probe_write(session: Session, now: datetime) -> None:
    """Do what a writer does, for the caller to roll back: take the write locks, insert a row.

    On SQLite the transaction already holds the write lock (BEGIN IMMEDIATE); on PostgreSQL
    the tables' ROW EXCLUSIVE locks (what INSERT and UPDATE take) wait for anyone holding
    them exclusively.
    """
    if _dialect(session) == "postgresql":
        session.execute(
            text("LOCK TABLE payments, payment_events, webhook_events IN ROW EXCLUSIVE MODE")
        )
    session.execute(
        insert(SweepHeartbeat).values(owner="readyz-write-probe", finished_at=now, claimed=0)
    )


# --- Operator's page (reconciler.services.operators): read-only overview queries. ---


def count_by_status(session: Session) -> dict[str, int]:
    stmt = select(Payment.status, func.count()).group_by(Payment.status)
    return {status: count for status, count in session.execute(stmt)}


def payments_needing_a_human(
    session: Session, *, states: Sequence[str], limit: int, after: tuple[datetime, str] | None
) -> Sequence[Payment]:
    """Page through payments in the given sync states, oldest first (cursor: the last row)."""
    stmt = select(Payment).where(Payment.sync_state.in_(states))
    if after is not None:
        stmt = stmt.where(tuple_(Payment.created_at, Payment.id) > tuple_(*after))
    stmt = stmt.order_by(Payment.created_at, Payment.id).limit(limit)
    return session.scalars(stmt).all()


def payments_matching(session: Session, term: str, limit: int) -> Sequence[Payment]:
    """Find payments whose id, merchant reference or gateway payment id is `term`."""
    stmt = (
        select(Payment)
        .where(
            or_(
                Payment.id == term,
                Payment.merchant_reference == term,
                Payment.gateway_payment_id == term,
            )
        )
        .order_by(Payment.created_at.desc(), Payment.id.desc())
        .limit(limit)
    )
    return session.scalars(stmt).all()


def _minute(session: Session, column: Any) -> Any:
    """A UTC `YYYY-MM-DD HH:MM` text of a timestamp column, in the session's dialect."""
    if _dialect(session) == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24:MI")
    return func.strftime("%Y-%m-%d %H:%M", column)  # SQLite stores naive UTC text


def events_per_minute(
    session: Session, *, since: datetime, sources: Sequence[str]
) -> list[tuple[str, str, int]]:
    """Count timeline rows per source and UTC minute (`YYYY-MM-DD HH:MM`) since `since`."""
    minute = _minute(session, PaymentEvent.recorded_at).label("minute")
    stmt = (
        select(PaymentEvent.source, minute, func.count())
        .where(PaymentEvent.recorded_at >= since, PaymentEvent.source.in_(sources))
        .group_by(PaymentEvent.source, minute)
    )
    return [(source, at, count) for source, at, count in session.execute(stmt)]


def last_poll_failures(
    session: Session, *, ignore: Sequence[str] = ()
) -> dict[str, tuple[datetime, str]]:
    """Each gateway's most recent poll failure still shown on a payment: (when, error).

    `ignore` names errors that were not a call's answer (a payment held back unpolled)."""
    failed = (
        Payment.last_error.is_not(None),
        Payment.last_polled_at.is_not(None),
        Payment.last_error.not_in(ignore),
    )
    latest = (
        select(Payment.gateway, func.max(Payment.last_polled_at).label("at"))
        .where(*failed)
        .group_by(Payment.gateway)
        .subquery()
    )
    stmt = (
        select(Payment.gateway, Payment.last_polled_at, Payment.last_error)
        .join(
            latest,
            (Payment.gateway == latest.c.gateway) & (Payment.last_polled_at == latest.c.at),
        )
        .where(*failed)
    )
    found: dict[str, tuple[datetime, str]] = {}
    for gateway, at, error in session.execute(stmt):
        if at is not None and error is not None:
            found.setdefault(gateway, (at, error))
    return found
