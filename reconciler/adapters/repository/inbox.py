"""The webhook inbox: raw bodies stored once, orphans kept for their payment."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    delete,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reconciler.adapters.models import (
    WebhookInbox,
)
from reconciler.adapters.repository._common import (
    dialect,
    inbox_table,
)

# Built once: values go in as parameters, so one compiled statement serves every delivery.
# No conflict target: either unique key, (gateway, event id) or (gateway, body hash).
_INSERT = {
    "postgresql": postgresql.insert(inbox_table)
    .on_conflict_do_nothing()
    .returning(inbox_table.c.id),
    "sqlite": sqlite.insert(inbox_table).on_conflict_do_nothing().returning(inbox_table.c.id),
}


def insert_inbox(session: Session, values: dict[str, Any]) -> int | None:
    """Store a webhook in the inbox once; None when this gateway event id or the same raw
    body is already there (a replay under a new, unsigned event id is a duplicate too)."""
    stmt = _INSERT[dialect(session)]
    return session.connection().execute(stmt, values).scalar_one_or_none()


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
        select(inbox_table.c.id)
        .where(inbox_table.c.processed_at.is_not(None), inbox_table.c.received_at < before)
        .order_by(inbox_table.c.id)
        .limit(limit)
    )
    result = session.execute(
        delete(inbox_table).where(inbox_table.c.id.in_(oldest.scalar_subquery()))
    )
    return int(getattr(result, "rowcount", 0) or 0)
