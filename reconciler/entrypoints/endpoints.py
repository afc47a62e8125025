"""The merchant API for webhook endpoints: `/v1/webhook_endpoints` and their deliveries."""

from __future__ import annotations

from flask import Blueprint, url_for

from reconciler.adapters.models import WebhookEndpoint
from reconciler.domain.notify import EventType
from reconciler.entrypoints.endpoint_schemas import (
    Delivery,
    DeliveryFilter,
    DeliveryPage,
    Endpoint,
    EndpointCreate,
    EndpointList,
    EndpointUpdate,
    EndpointWithSecret,
    Recovered,
    RecoverRequest,
)
from reconciler.entrypoints.merchant_auth import authenticate, ctx, merchant
from reconciler.entrypoints.routing import Answer, Routes
from reconciler.services import endpoints

bp = Blueprint("webhook_endpoints", __name__, url_prefix="/v1/webhook_endpoints")
routes = Routes(bp, security="bearer", not_found="No such webhook endpoint for this merchant")
bp.before_request(authenticate)

DISABLED = {409: "The endpoint is disabled: enable it first"}
BUSY = {409: "The endpoint is disabled, or the delivery is being attempted right now"}


def _with_secret(endpoint: WebhookEndpoint, secret: str) -> EndpointWithSecret:
    return EndpointWithSecret(**Endpoint.model_validate(endpoint).model_dump(), secret=secret)


def _events(events: list[EventType] | None) -> list[str] | None:
    return [e.value for e in events] if events is not None else None


@routes.post(
    "",
    body=EndpointCreate,
    ok={201: Answer(EndpointWithSecret, "Registered", headers=("Location",))},
)
def create_endpoint(body: EndpointCreate) -> tuple[EndpointWithSecret, int, dict[str, str]]:
    """Register an endpoint; its secret is in this answer (and on rotation) only."""
    endpoint, secret = endpoints.create_endpoint(
        ctx(),
        merchant(),
        url=body.url,
        events=_events(body.events),
        description=body.description,
    )
    location = url_for("webhook_endpoints.get_endpoint", endpoint_id=endpoint.id)
    return _with_secret(endpoint, secret), 201, {"Location": location}


@routes.get("", ok={200: EndpointList})
def list_endpoints() -> EndpointList:
    """List the merchant's endpoints, oldest first."""
    found = endpoints.list_endpoints(ctx(), merchant())
    return EndpointList(data=[Endpoint.model_validate(e) for e in found])


@routes.get("/<endpoint_id>", ok={200: Endpoint})
def get_endpoint(endpoint_id: str) -> Endpoint:
    """Show one endpoint."""
    return Endpoint.model_validate(endpoints.get_endpoint(ctx(), merchant(), endpoint_id))


@routes.patch("/<endpoint_id>", body=EndpointUpdate, ok={200: Endpoint})
def update_endpoint(endpoint_id: str, body: EndpointUpdate) -> Endpoint:
    """Change an endpoint's url, events, description or status."""
    changes = endpoints.EndpointChanges(
        url=body.url,
        events=_events(body.events),
        description=body.description,
        status=body.status,
        clear_description="description" in body.model_fields_set and body.description is None,
    )
    endpoint = endpoints.update_endpoint(ctx(), merchant(), endpoint_id, changes)
    return Endpoint.model_validate(endpoint)


@routes.delete("/<endpoint_id>", ok={204: Answer(None, "Deleted")})
def delete_endpoint(endpoint_id: str) -> None:
    """Delete an endpoint: nothing more is delivered to it."""
    endpoints.delete_endpoint(ctx(), merchant(), endpoint_id)


@routes.post("/<endpoint_id>/rotate_secret", ok={200: EndpointWithSecret})
def rotate_secret(endpoint_id: str) -> EndpointWithSecret:
    """Give the endpoint a new secret; both sign every delivery for 24 h."""
    endpoint, secret = endpoints.rotate_secret(ctx(), merchant(), endpoint_id)
    return _with_secret(endpoint, secret)


@routes.get("/<endpoint_id>/deliveries", query=DeliveryFilter, ok={200: DeliveryPage})
def list_deliveries(endpoint_id: str, query: DeliveryFilter) -> DeliveryPage:
    """List the endpoint's deliveries, newest first, one page at a time."""
    page, cursor = endpoints.list_deliveries(
        ctx(),
        merchant(),
        endpoint_id,
        status=query.status or None,
        limit=query.limit,
        cursor=query.cursor or None,
    )
    return DeliveryPage(data=[Delivery.model_validate(d) for d in page], next_cursor=cursor)


@routes.post(
    "/<endpoint_id>/deliveries/<delivery_id>/retry",
    ok={202: Answer(Delivery, "Due now")},
    problems=BUSY,
)
def retry_delivery(endpoint_id: str, delivery_id: str) -> tuple[Delivery, int]:
    """Attempt a delivery again now (a failed one too)."""
    found = endpoints.retry_delivery(ctx(), merchant(), endpoint_id, delivery_id)
    return Delivery.model_validate(found), 202


@routes.post(
    "/<endpoint_id>/recover",
    body=RecoverRequest,
    ok={202: Answer(Recovered, "How many are due again")},
    problems=DISABLED,
)
def recover(endpoint_id: str, body: RecoverRequest) -> tuple[Recovered, int]:
    """Attempt again every failed delivery created since a time."""
    count = endpoints.recover_deliveries(ctx(), merchant(), endpoint_id, since=body.since)
    return Recovered(count=count), 202
