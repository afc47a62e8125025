"""Merchant use cases for webhook endpoints: register, change, rotate, see and redo deliveries."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from reconciler.adapters import repository, wakeups
from reconciler.adapters.models import Merchant, WebhookEndpoint
from reconciler.adapters.notify.destinations import DestinationGuard, DestinationRefused
from reconciler.domain.delivery import DeliveryStatus, give_up_deadline
from reconciler.domain.notify import EVENT_TYPES
from reconciler.services.context import Context
from reconciler.services.errors import Conflict, NotFound, ValidationFailed
from reconciler.services.ids import new_id
from reconciler.services.notifications import disable_endpoint
from reconciler.services.payments import page_start
from reconciler.services.secrets import seal
from reconciler.services.work import DELIVERIES

ROTATION_OVERLAP = timedelta(hours=24)
REGISTRATION_LOOKUP_S = 1.0  # how long registering an endpoint waits for its DNS answer
ENABLED, DISABLED = "enabled", "disabled"
DISABLED_BY_MERCHANT = "disabled by the merchant"


def new_secret() -> str:
    """Make a Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class EndpointChanges:
    """What a PATCH asks to change; None leaves a field as it is."""

    url: str | None = None
    events: Sequence[str] | None = None
    description: str | None = None
    status: str | None = None
    clear_description: bool = False  # `"description": null` removes it


def guard(ctx: Context) -> DestinationGuard:
    if ctx.resolver is None:
        return DestinationGuard(allow_private=ctx.settings.notify.allow_private)
    return DestinationGuard(allow_private=ctx.settings.notify.allow_private, resolver=ctx.resolver)


def _checked_url(ctx: Context, url: str) -> str:
    """Check a URL's form and where it resolves; a lookup slower than a moment is left to
    delivery time, where every connection is checked (a request thread never waits on DNS
    for long)."""
    try:
        guard(ctx).check_url(url, lookup_timeout_s=REGISTRATION_LOOKUP_S)
    except DestinationRefused as exc:
        raise ValidationFailed(f"url refused: {exc}") from None
    return url


def _events(events: Sequence[str] | None) -> list[str]:
    if events is None:
        return list(EVENT_TYPES)
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise ValidationFailed(f"unknown event type(s): {', '.join(unknown)}")
    if not events:
        raise ValidationFailed("events must name at least one event type (omit it for all)")
    return [t for t in EVENT_TYPES if t in events]


def create_endpoint(
    ctx: Context,
    merchant: Merchant,
    *,
    url: str,
    events: Sequence[str] | None,
    description: str | None,
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; return it with its secret (shown here and on rotation only)."""
    now = ctx.clock()
    secret = new_secret()
    endpoint = WebhookEndpoint(
        id=new_id("we"),
        merchant_id=merchant.id,
        url=_checked_url(ctx, url),
        events=_events(events),
        description=description,
        status=ENABLED,
        secret=seal(ctx, secret),
        created_at=now,
        updated_at=now,
    )
    limit = ctx.settings.notify.max_endpoints
    with ctx.sessions.begin() as session:
        if repository.count_merchant_endpoints(session, merchant.id, lock=True) >= limit:
            raise Conflict(
                f"a merchant may have at most {limit} webhook endpoints; delete one first "
                "(RECONCILER_NOTIFY_MAX_ENDPOINTS)"
            )
        session.add(endpoint)
    return endpoint, secret


def list_endpoints(ctx: Context, merchant: Merchant) -> Sequence[WebhookEndpoint]:
    with ctx.read() as session:
        return repository.merchant_endpoints(session, merchant.id)


def get_endpoint(ctx: Context, merchant: Merchant, endpoint_id: str) -> WebhookEndpoint:
    with ctx.read() as session:
        endpoint = repository.merchant_endpoint(session, merchant.id, endpoint_id)
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


def update_endpoint(
    ctx: Context, merchant: Merchant, endpoint_id: str, changes: EndpointChanges
) -> WebhookEndpoint:
    """Change an endpoint; disabling it fails its pending deliveries (`recover` revives them)."""
    url = _checked_url(ctx, changes.url) if changes.url is not None else None
    events = _events(changes.events) if changes.events is not None else None
    if changes.status not in (None, ENABLED, DISABLED):
        raise ValidationFailed("status must be enabled or disabled")
    now = ctx.clock()
    with ctx.sessions.begin() as session:
        endpoint = _locked(session, merchant, endpoint_id)
        if url is not None:
            endpoint.url = url
        if events is not None:
            endpoint.events = events
        if changes.description is not None or changes.clear_description:
            endpoint.description = changes.description
        endpoint.updated_at = now
        if changes.status == ENABLED:
            endpoint.status, endpoint.disabled_reason = ENABLED, None
        elif changes.status == DISABLED and endpoint.status != DISABLED:
            disable_endpoint(session, endpoint.id, reason=DISABLED_BY_MERCHANT, now=now)
    return endpoint


def delete_endpoint(ctx: Context, merchant: Merchant, endpoint_id: str) -> None:
    """Delete an endpoint: nothing more is delivered to it; its deliveries stay on record."""
    now = ctx.clock()
    with ctx.sessions.begin() as session:
        endpoint = _locked(session, merchant, endpoint_id)
        endpoint.deleted_at = now
        endpoint.updated_at = now
        endpoint.status = DISABLED
        endpoint.disabled_reason = "deleted"
        repository.halt_pending_deliveries(session, endpoint.id, reason="endpoint deleted")


def rotate_secret(
    ctx: Context, merchant: Merchant, endpoint_id: str
) -> tuple[WebhookEndpoint, str]:
    """Give the endpoint a new secret; the one it replaces still signs for 24 h."""
    now = ctx.clock()
    secret = new_secret()
    sealed = seal(ctx, secret)
    with ctx.sessions.begin() as session:
        endpoint = _locked(session, merchant, endpoint_id)
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
        endpoint.secret = sealed
        endpoint.updated_at = now
    return endpoint, secret


def list_deliveries(
    ctx: Context,
    merchant: Merchant,
    endpoint_id: str,
    *,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[repository.DeliveryListing], str | None]:
    """Return one page of an endpoint's deliveries, newest first, and the next cursor."""
    if status is not None and status not in {s.value for s in DeliveryStatus}:
        raise ValidationFailed(
            f"status must be one of: {', '.join(s.value for s in DeliveryStatus)}"
        )
    after = page_start(limit, cursor)
    with ctx.read() as session:
        if repository.merchant_endpoint(session, merchant.id, endpoint_id) is None:
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        page = repository.endpoint_deliveries(
            session, endpoint_id, status=status, limit=limit + 1, after=after
        )
    more = len(page) > limit
    page = page[:limit]
    return page, repository.encode_delivery_cursor(page[-1][0]) if more else None


def retry_delivery(
    ctx: Context, merchant: Merchant, endpoint_id: str, delivery_id: str
) -> repository.DeliveryListing:
    """Make a delivery due now; a failed or delivered one starts a fresh schedule."""
    now = ctx.clock()
    policy = ctx.settings.notify.policy
    with ctx.sessions.begin() as session:
        endpoint = _locked(session, merchant, endpoint_id)
        _require_enabled(endpoint)
        found = repository.endpoint_delivery(session, endpoint_id, delivery_id, for_update=True)
        if found is None:
            raise NotFound(f"no delivery {delivery_id} for webhook endpoint {endpoint_id}")
        delivery = found[0]
        if delivery.lease_expires_at is not None and delivery.lease_expires_at > now:
            raise Conflict(f"delivery {delivery_id} is being attempted right now")
        if delivery.status != DeliveryStatus.PENDING.value:
            delivery.status = DeliveryStatus.PENDING.value
            delivery.give_up_at = give_up_deadline(policy, now)
            delivery.last_delay_s = None
        delivery.next_attempt_at = now
        delivery.requested_at = now  # asked for: it goes out past an open breaker
        wakeups.note_due(session, now, DELIVERIES)
    return found


def recover_deliveries(
    ctx: Context, merchant: Merchant, endpoint_id: str, *, since: datetime
) -> int:
    """Make every failed delivery created since `since` due now; return how many."""
    now = ctx.clock()
    if since > now:
        raise ValidationFailed("since must not be in the future")
    with ctx.sessions.begin() as session:
        endpoint = _locked(session, merchant, endpoint_id)
        _require_enabled(endpoint)
        count = repository.revive_failed_deliveries(
            session,
            endpoint.id,
            since=since,
            now=now,
            give_up_at=give_up_deadline(ctx.settings.notify.policy, now),
        )
        if count:
            wakeups.note_due(session, now, DELIVERIES)
        return count


def _locked(session: Session, merchant: Merchant, endpoint_id: str) -> WebhookEndpoint:
    endpoint = repository.merchant_endpoint(session, merchant.id, endpoint_id, for_update=True)
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


def _require_enabled(endpoint: WebhookEndpoint) -> None:
    if endpoint.status != ENABLED:
        raise Conflict(
            f"webhook endpoint {endpoint.id} is disabled ({endpoint.disabled_reason}); "
            "enable it first"
        )
