"""Sweep heartbeats, readiness probes and the gauges /metrics reads."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Row,
    and_,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.orm import Session

from reconciler.adapters.models import (
    Payment,
    SweepHeartbeat,
)
from reconciler.adapters.repository._common import (
    dialect,
)


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


def count_abandoned(session: Session) -> dict[str, int]:
    """Count payments canceled as abandoned, by gateway (payments are never deleted)."""
    stmt = (
        select(Payment.gateway, func.count())
        .where(Payment.cancel_reason == "abandoned")
        .group_by(Payment.gateway)
    )
    return {gateway: count for gateway, count in session.execute(stmt)}


def due_backlog(session: Session, now: datetime) -> int:
    stmt = select(func.count()).select_from(Payment).where(Payment.next_poll_at <= now)
    return session.scalar(stmt) or 0


def oldest_pending_created_at(
    session: Session, waiting: Mapping[str, frozenset[str]] | None = None
) -> datetime | None:
    """When the oldest pending payment was registered, leaving out those `waiting` for
    their customer (by gateway, their gateway statuses): those are abandoned, not late."""
    stmt = select(func.min(Payment.created_at)).where(Payment.status == "pending")
    for gateway, statuses in (waiting or {}).items():
        stmt = stmt.where(
            ~and_(
                Payment.gateway == gateway,
                func.coalesce(Payment.gateway_status, "").in_(sorted(statuses)),
            )
        )
    return session.scalar(stmt)


def ping(session: Session) -> Row[Any] | None:
    return session.execute(select(1)).first()


def probe_write(session: Session, now: datetime) -> None:
    """Do what a writer does, for the caller to roll back: take the write locks, insert a row.

    On SQLite the transaction already holds the write lock (BEGIN IMMEDIATE); on PostgreSQL
    the tables' ROW EXCLUSIVE locks (what INSERT and UPDATE take) wait for anyone holding
    them exclusively.
    """
    if dialect(session) == "postgresql":
        session.execute(
            text("LOCK TABLE payments, payment_events, webhook_events IN ROW EXCLUSIVE MODE")
        )
    session.execute(
        insert(SweepHeartbeat).values(owner="readyz-write-probe", finished_at=now, claimed=0)
    )
