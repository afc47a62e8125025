"""The engine's queues: due rows claimed under a lease, released only while owned."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    Row,
    Select,
    Table,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from reconciler.adapters.repository._common import (
    deliveries_table,
    dialect,
    payments_table,
)
from reconciler.adapters.repository.fair_claims import deliveries_round_robin
from reconciler.domain.payment import SNAPSHOT_COLUMNS


@dataclass(frozen=True)
class Queue:
    """A table the backoff engine drives: due rows by `due`, leased by owner and expiry."""

    name: str
    table: Table
    due: str  # the column holding when the row is next due
    returning: tuple[str, ...]  # what a claim hands to the kind
    # Deliveries only: claimed merchants in turn, at most this many leased per merchant
    # (`fair_claims.py`); None claims oldest due first.
    per_merchant_cap: int | None = None

    def column(self, name: str) -> Any:
        return self.table.c[name]


PAYMENT_POLLS = Queue(
    name="payment_polls",
    table=payments_table,
    due="next_poll_at",
    returning=SNAPSHOT_COLUMNS,  # the whole row: the decision runs over what the claim read
)


DELIVERIES = Queue(
    name="deliveries",
    table=deliveries_table,
    due="next_attempt_at",
    returning=("id", "endpoint_id", "event_id"),
)


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
    skip_locked = dialect(session) == "postgresql"
    if queue.per_merchant_cap is not None:
        due = deliveries_round_robin(
            now, limit, skip_locked=skip_locked, cap=queue.per_merchant_cap
        )
    else:
        due = due_query(now, limit, skip_locked=skip_locked, queue=queue)
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
