"""Merchants and their API keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    and_,
    or_,
    select,
)
from sqlalchemy.orm import Session

from reconciler.adapters.models import (
    Merchant,
)


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
