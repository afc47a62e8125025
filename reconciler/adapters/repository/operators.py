"""The operator's page: read-only overview queries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.orm import Session

from reconciler.adapters.models import (
    Payment,
    PaymentEvent,
)
from reconciler.adapters.repository._common import (
    dialect,
)


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
    if dialect(session) == "postgresql":
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
