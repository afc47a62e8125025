"""Payments and their timeline: lookups, locks, listing with cursors."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import not_, select, tuple_
from sqlalchemy.orm import Session

from reconciler.adapters.models import (
    DEFAULT_ACCOUNT,
    Payment,
    PaymentEvent,
)


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
    session: Session,
    gateway: str,
    gateway_payment_id: str,
    *,
    merchant_id: str,
    account: str = DEFAULT_ACCOUNT,
) -> Payment | None:
    """Find the merchant's own row for the payment one gateway account knows by this id."""
    stmt = select(Payment).where(
        Payment.gateway == gateway,
        Payment.gateway_account == account,
        Payment.gateway_payment_id == gateway_payment_id,
        Payment.merchant_id == merchant_id,
    )
    return session.scalars(stmt).first()


def gateway_payment_tracked(
    session: Session, gateway: str, gateway_payment_id: str, *, account: str = DEFAULT_ACCOUNT
) -> bool:
    """Say whether a row (not a shadow) tracks this gateway account's payment."""
    stmt = select(Payment.id).where(
        Payment.gateway == gateway,
        Payment.gateway_account == account,
        Payment.gateway_payment_id == gateway_payment_id,
        not_(Payment.shadow),
    )
    return session.scalar(stmt) is not None


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
