"""Every query the service makes. Callers name an intent; only this module builds SQL."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Select, Table, delete, func, insert, or_, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reconciler.adapters.models import (
    Merchant,
    Payment,
    PaymentEvent,
    SweepHeartbeat,
    WebhookInbox,
)

payments = cast(Table, Payment.__table__)
inbox = cast(Table, WebhookInbox.__table__)


@dataclass(frozen=True)
class Claim:
    """A payment leased to one sweeper, with what the gateway call needs."""

    id: str
    gateway: str
    gateway_payment_id: str | None
    amount: int
    currency: str
    merchant_reference: str
    idempotency_key: str


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def due_query(now: datetime, limit: int, *, skip_locked: bool) -> Select[tuple[str]]:
    """Select the ids of up to `limit` due, unleased payments, oldest due first.

    `next_poll_at <= now` lets the planner use the partial index `ix_payments_due`, so the
    cost follows the due rows, not the table (a test checks the plan on PostgreSQL).
    """
    due = (
        select(payments.c.id)
        .where(payments.c.next_poll_at <= now)
        .where(or_(payments.c.lease_expires_at.is_(None), payments.c.lease_expires_at < now))
        .order_by(payments.c.next_poll_at)
        .limit(limit)
    )
    return due.with_for_update(skip_locked=True) if skip_locked else due


def claim_due(
    session: Session, *, now: datetime, limit: int, owner: str, lease_until: datetime
) -> list[Claim]:
    """Lease up to `limit` due payments to `owner` in one statement, oldest due first.

    `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`: on PostgreSQL
    concurrent sweepers skip each other's rows; on SQLite the statement runs under the
    database write lock, so it is atomic too. An expired lease is fair game: its sweeper
    died or stalled, and its result will be refused when it comes back.
    """
    due = due_query(now, limit, skip_locked=_dialect(session) == "postgresql")
    stmt = (
        update(payments)
        .where(payments.c.id.in_(due.scalar_subquery()))
        .values(lease_owner=owner, lease_expires_at=lease_until)
        .returning(
            payments.c.id,
            payments.c.gateway,
            payments.c.gateway_payment_id,
            payments.c.amount,
            payments.c.currency,
            payments.c.merchant_reference,
            payments.c.idempotency_key,
        )
    )
    return [Claim(*row) for row in session.execute(stmt)]


def merchant_by_key_hash(session: Session, key_hash: str) -> Merchant | None:
    return session.scalars(select(Merchant).where(Merchant.api_key_hash == key_hash)).first()


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
    if when.tzinfo is None or not pid:
        raise ValueError("malformed cursor")
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
