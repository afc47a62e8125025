"""Operators' view of notifications across merchants: failing endpoints, deliveries."""

from __future__ import annotations

from reconciler.adapters import repository
from reconciler.domain.delivery import DeliveryStatus
from reconciler.services.context import Context
from reconciler.services.errors import ValidationFailed
from reconciler.services.payments import page_start

# What a listing row holds, named for the callers (they do not reach the repository).
EndpointHealth = repository.EndpointHealth
OperatorDelivery = repository.OperatorDelivery

ENDPOINT_FILTERS = ("disabled", "failing")


def endpoints_by_health(
    ctx: Context, status: str | None, limit: int
) -> list[repository.EndpointHealth]:
    """List endpoints of every merchant (only disabled or failing ones, if asked)."""
    if status is not None and status not in ENDPOINT_FILTERS:
        raise ValidationFailed(f"status must be one of: {', '.join(ENDPOINT_FILTERS)}")
    page_start(limit, None)
    with ctx.read() as session:
        return repository.endpoints_by_health(session, status=status, limit=limit)


def deliveries(
    ctx: Context,
    *,
    status: str | None,
    endpoint_id: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[repository.OperatorDelivery], str | None]:
    """Return one page of every merchant's deliveries, newest first, and the next cursor."""
    names = [s.value for s in DeliveryStatus]
    if status is not None and status not in names:
        raise ValidationFailed(f"status must be one of: {', '.join(names)}")
    after = page_start(limit, cursor)
    with ctx.read() as session:
        page = repository.all_deliveries(
            session, status=status, endpoint_id=endpoint_id, limit=limit + 1, after=after
        )
    more = len(page) > limit
    page = page[:limit]
    return page, repository.encode_delivery_cursor(page[-1][0]) if more else None
