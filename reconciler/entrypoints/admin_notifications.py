"""Operator endpoints for notifications under `/admin`: failing endpoints, deliveries."""

from __future__ import annotations

from typing import Annotated, Literal

from flask import Blueprint
from pydantic import Field

from reconciler.domain.delivery import DeliveryStatus
from reconciler.domain.notify import EventType
from reconciler.entrypoints.admin import authenticate_admin
from reconciler.entrypoints.merchant_auth import ctx
from reconciler.entrypoints.routing import Routes
from reconciler.entrypoints.schemas import Shape, Timestamp, one_of
from reconciler.services import notify_admin
from reconciler.services.notify_admin import EndpointHealth, OperatorDelivery
from reconciler.services.payments import MAX_LIST_LIMIT

bp = Blueprint("admin_notifications", __name__, url_prefix="/admin")
bp.before_request(authenticate_admin)
routes = Routes(bp, security="admin", not_found="No such endpoint or delivery")


class EndpointHealthFilter(Shape):
    """The query of `GET /admin/webhook_endpoints`."""

    status: Annotated[str, one_of(["", *notify_admin.ENDPOINT_FILTERS])] = Field(
        "", description="`disabled`, `failing` (enabled, every attempt failing), or any"
    )
    limit: int = Field(50, ge=1, le=MAX_LIST_LIMIT)


class OperatorEndpoint(Shape):
    """A merchant's endpoint as operators see it, with its delivery counts."""

    id: str
    merchant_id: str
    url: str
    status: Literal["enabled", "disabled"]
    disabled_reason: str | None
    failing_since: Timestamp | None
    last_error: str | None
    last_error_at: Timestamp | None
    pending_deliveries: int
    failed_deliveries: int
    created_at: Timestamp
    updated_at: Timestamp


class OperatorEndpointList(Shape):
    data: list[OperatorEndpoint]


class OperatorDeliveryFilter(Shape):
    """The query of `GET /admin/deliveries`."""

    status: Annotated[str, one_of(["", *DeliveryStatus])] = ""
    endpoint_id: str = Field("", max_length=64, description="Only this endpoint's; empty: all")
    limit: int = Field(50, ge=1, le=MAX_LIST_LIMIT)
    cursor: str = Field("", description="`next_cursor` of the previous page")


class OperatorDeliveryShape(Shape):
    """One delivery of any merchant."""

    id: str
    merchant_id: str
    endpoint_id: str
    event_id: str
    event_type: EventType
    payment_id: str
    status: DeliveryStatus
    created_at: Timestamp
    attempts: int
    next_attempt_at: Timestamp | None
    last_attempt_at: Timestamp | None
    last_response_status: int | None
    last_error: str | None
    delivered_at: Timestamp | None


class OperatorDeliveryPage(Shape):
    data: list[OperatorDeliveryShape]
    next_cursor: str | None


def _endpoint(found: EndpointHealth) -> OperatorEndpoint:
    endpoint, pending, failed = found
    return OperatorEndpoint(
        id=endpoint.id,
        merchant_id=endpoint.merchant_id,
        url=endpoint.url,
        status="enabled" if endpoint.status == "enabled" else "disabled",
        disabled_reason=endpoint.disabled_reason,
        failing_since=endpoint.failing_since,
        last_error=endpoint.last_error,
        last_error_at=endpoint.last_error_at,
        pending_deliveries=pending,
        failed_deliveries=failed,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


def _delivery(found: OperatorDelivery) -> OperatorDeliveryShape:
    delivery, event_type, payment_id, merchant_id = found
    return OperatorDeliveryShape(
        id=delivery.id,
        merchant_id=merchant_id,
        endpoint_id=delivery.endpoint_id,
        event_id=delivery.event_id,
        event_type=EventType(event_type),
        payment_id=payment_id,
        status=DeliveryStatus(delivery.status),
        created_at=delivery.created_at,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        last_attempt_at=delivery.last_attempt_at,
        last_response_status=delivery.last_response_status,
        last_error=delivery.last_error,
        delivered_at=delivery.delivered_at,
    )


@routes.get("/webhook_endpoints", query=EndpointHealthFilter, ok={200: OperatorEndpointList})
def list_endpoints(query: EndpointHealthFilter) -> OperatorEndpointList:
    """List every merchant's endpoints, the longest failing first."""
    found = notify_admin.endpoints_by_health(ctx(), query.status or None, query.limit)
    return OperatorEndpointList(data=[_endpoint(e) for e in found])


@routes.get("/deliveries", query=OperatorDeliveryFilter, ok={200: OperatorDeliveryPage})
def list_deliveries(query: OperatorDeliveryFilter) -> OperatorDeliveryPage:
    """List every merchant's deliveries, newest first, by status and endpoint."""
    page, cursor = notify_admin.deliveries(
        ctx(),
        status=query.status or None,
        endpoint_id=query.endpoint_id or None,
        limit=query.limit,
        cursor=query.cursor or None,
    )
    return OperatorDeliveryPage(data=[_delivery(d) for d in page], next_cursor=cursor)
