"""Gateway accounts, and every row that keeps a sealed secret (for key rotation)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from reconciler.adapters.models import GatewayAccount, WebhookEndpoint


def gateway_account(
    session: Session, account_id: str, *, for_update: bool = False
) -> GatewayAccount | None:
    """Load one account by id."""
    query = select(GatewayAccount).where(GatewayAccount.id == account_id)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).first()


def gateway_accounts(
    session: Session, *, merchant_id: str | None = None, gateway: str | None = None
) -> list[GatewayAccount]:
    """List accounts, oldest first, optionally of one merchant and one gateway."""
    query = select(GatewayAccount).order_by(GatewayAccount.created_at, GatewayAccount.id)
    if merchant_id is not None:
        query = query.where(GatewayAccount.merchant_id == merchant_id)
    if gateway is not None:
        query = query.where(GatewayAccount.gateway == gateway)
    return list(session.scalars(query))


# Every (model, sealed columns) pair: what `reconciler secrets rotate` re-encrypts.
SEALED_COLUMNS: tuple[tuple[type[Any], tuple[str, ...]], ...] = (
    (GatewayAccount, ("credentials", "webhook_secret", "previous_webhook_secret")),
    (WebhookEndpoint, ("secret", "previous_secret")),
)


def rows_with_secrets(session: Session) -> Iterator[tuple[Any, str, dict[str, str]]]:
    """Yield (table, row id, its stored secrets by column) for every row holding one, locked."""
    for model, columns in SEALED_COLUMNS:
        query = select(model.id, *(getattr(model, c) for c in columns)).order_by(model.id)
        for row in session.execute(query.with_for_update()).all():
            values = {c: v for c, v in zip(columns, row[1:], strict=True) if v is not None}
            if values:
                yield model, row[0], values


def store_secrets(session: Session, model: Any, row_id: str, values: dict[str, str]) -> None:
    """Write re-encrypted secrets back to one row."""
    session.execute(update(model).where(model.id == row_id).values(**values))
