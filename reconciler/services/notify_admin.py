"""Operators' view of notifications across merchants: failing endpoints, deliveries, redos."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from reconciler.adapters import repository
from reconciler.adapters.models import Merchant, WebhookEndpoint
from reconciler.domain.breaker import BreakerState
from reconciler.domain.delivery import DeliveryStatus
from reconciler.services import endpoints
from reconciler.services.context import Context
from reconciler.services.errors import NotFound, ValidationFailed
from reconciler.services.payments import page_start

# What a listing row holds, named for the callers (they do not reach the repository).
EndpointHealth = repository.EndpointHealth
OperatorDelivery = repository.OperatorDelivery
DeliveryListing = repository.DeliveryListing

ENDPOINT_FILTERS = ("disabled", "failing")
UNKNOWN = "unknown"  # a breaker state when this process runs no sweep (it holds no breakers)


@dataclass(frozen=True)
class EndpointRow:
    """One endpoint as an operator reads it: health, outcomes and its breaker here."""

    endpoint: WebhookEndpoint
    merchant: str  # the merchant's name
    pending: int
    failed: int
    attempted: int  # deliveries attempted at least once
    delivered: int
    breaker: str  # a BreakerState value, or UNKNOWN

    @property
    def success_rate(self) -> float | None:
        """Delivered ÷ attempted deliveries; None before any attempt."""
        return self.delivered / self.attempted if self.attempted else None


def _check_endpoint_query(status: str | None, limit: int) -> None:
    if status is not None and status not in ENDPOINT_FILTERS:
        raise ValidationFailed(f"status must be one of: {', '.join(ENDPOINT_FILTERS)}")
    page_start(limit, None)


def endpoints_by_health(
    ctx: Context, status: str | None, limit: int
) -> list[repository.EndpointHealth]:
    """List endpoints of every merchant (only disabled or failing ones, if asked)."""
    _check_endpoint_query(status, limit)
    with ctx.read() as session:
        return repository.endpoints_by_health(session, status=status, limit=limit)


def endpoint_rows(
    ctx: Context,
    breakers: Mapping[str, BreakerState] | None,
    status: str | None,
    limit: int,
) -> list[EndpointRow]:
    """List endpoints as `endpoints_by_health` does, with success rates and breaker states.

    `breakers` maps endpoint ids to the in-process sweeper's breakers (an endpoint it has
    not called is closed); None when this process runs no sweep.
    """
    _check_endpoint_query(status, limit)
    with ctx.read() as session:
        found = repository.endpoints_by_health(session, status=status, limit=limit)
        return _rows(session, found, breakers)


def endpoint_page(
    ctx: Context,
    breakers: Mapping[str, BreakerState] | None,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[EndpointRow], str | None]:
    """One page of every merchant's endpoints, by merchant, and the next page's cursor."""
    _check_endpoint_query(status, limit)
    after = _decode_endpoint_cursor(cursor) if cursor else None
    with ctx.read() as session:
        found = repository.endpoints_by_merchant(
            session, status=status, limit=limit + 1, after=after
        )
        rows = _rows(session, found[:limit], breakers)
    last = rows[-1].endpoint if rows and len(found) > limit else None
    return rows, _encode_endpoint_cursor(last.merchant_id, last.id) if last else None


def _encode_endpoint_cursor(merchant_id: str, endpoint_id: str) -> str:
    return base64.urlsafe_b64encode(f"{merchant_id}|{endpoint_id}".encode()).decode().rstrip("=")


def _decode_endpoint_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        merchant_id, endpoint_id = raw.split("|")
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("cursor is not one this service gave out") from None
    return merchant_id, endpoint_id


def _rows(
    session: Session,
    found: list[repository.EndpointHealth],
    breakers: Mapping[str, BreakerState] | None,
) -> list[EndpointRow]:
    outcomes = repository.endpoint_outcomes(session, [e.id for e, _, _ in found])
    names = repository.merchant_names(session, sorted({e.merchant_id for e, _, _ in found}))
    rows = []
    for endpoint, pending, failed in found:
        attempted, delivered = outcomes.get(endpoint.id, (0, 0))
        state = (
            UNKNOWN if breakers is None else breakers.get(endpoint.id, BreakerState.CLOSED).value
        )
        rows.append(
            EndpointRow(
                endpoint=endpoint,
                merchant=names.get(endpoint.merchant_id, endpoint.merchant_id),
                pending=pending,
                failed=failed,
                attempted=attempted,
                delivered=delivered,
                breaker=state,
            )
        )
    return rows


def deliveries(
    ctx: Context,
    *,
    status: str | None,
    endpoint_id: str | None,
    limit: int,
    cursor: str | None,
    payment_id: str | None = None,
) -> tuple[list[repository.OperatorDelivery], str | None]:
    """Return one page of every merchant's deliveries (or one payment's), newest first,
    and the next cursor."""
    names = [s.value for s in DeliveryStatus]
    if status is not None and status not in names:
        raise ValidationFailed(f"status must be one of: {', '.join(names)}")
    after = page_start(limit, cursor)
    with ctx.read() as session:
        page = repository.all_deliveries(
            session,
            status=status,
            endpoint_id=endpoint_id,
            payment_id=payment_id,
            limit=limit + 1,
            after=after,
        )
    more = len(page) > limit
    page = page[:limit]
    return page, repository.encode_delivery_cursor(page[-1][0]) if more else None


def retry_delivery(ctx: Context, endpoint_id: str, delivery_id: str) -> DeliveryListing:
    """Make any merchant's delivery due now, as the merchant's own retry does."""
    return endpoints.retry_delivery(ctx, _owner(ctx, endpoint_id), endpoint_id, delivery_id)


def recover_deliveries(ctx: Context, endpoint_id: str, *, since: datetime) -> int:
    """Make every failed delivery of any merchant's endpoint created since `since` due now."""
    return endpoints.recover_deliveries(ctx, _owner(ctx, endpoint_id), endpoint_id, since=since)


def _owner(ctx: Context, endpoint_id: str) -> Merchant:
    with ctx.read() as session:
        merchant = repository.endpoint_owner(session, endpoint_id)
    if merchant is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return merchant
