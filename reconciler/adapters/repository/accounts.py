"""Gateway accounts, and every row that keeps a sealed secret (for key rotation)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
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


def rows_with_secrets(session: Session, batch: int = 500) -> Iterator[tuple[Any, tuple[str, ...]]]:
    """Yield every row holding a sealed secret, locked, with the names of those columns."""
    for model, columns in SEALED_COLUMNS:
        query = select(model).order_by(model.id).with_for_update()
        for row in session.scalars(query.execution_options(yield_per=batch)):
            yield row, columns
