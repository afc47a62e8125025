"""The merchant API for webhook endpoints: `/v1/webhook_endpoints` and their deliveries."""

from __future__ import annotations

from typing import TypeVar

from flask import Blueprint, Response, jsonify, request, url_for
from pydantic import BaseModel, ValidationError

from reconciler.adapters.models import WebhookEndpoint
from reconciler.adapters.repository import DeliveryListing
from reconciler.entrypoints import api
from reconciler.entrypoints.bodies import read_body
from reconciler.entrypoints.endpoint_schemas import (
    Delivery,
    DeliveryList,
    Endpoint,
    EndpointCreate,
    EndpointList,
    EndpointUpdate,
    EndpointWithSecret,
    RecoverRequest,
    RecoverResult,
    dump,
)
from reconciler.services import endpoints
from reconciler.services.errors import ValidationFailed

bp = Blueprint("webhook_endpoints", __name__, url_prefix="/v1/webhook_endpoints")
bp.before_request(api._authenticate)

DELIVERY_PARAMETERS = frozenset({"status", "limit", "cursor"})
Model = TypeVar("Model", bound=BaseModel)


def _parse(model: type[Model]) -> Model:
    raw = read_body(api.ctx().settings.max_body_bytes)
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in error["loc"]) or "body"
        raise ValidationFailed(f"{where}: {error['msg']}") from None


def _endpoint(endpoint: WebhookEndpoint) -> Endpoint:
    return Endpoint.model_validate(endpoint, from_attributes=True)


def _with_secret(endpoint: WebhookEndpoint, secret: str) -> EndpointWithSecret:
    return EndpointWithSecret(**_endpoint(endpoint).model_dump(), secret=secret)


def _delivery(listing: DeliveryListing) -> Delivery:
    delivery, event_type, payment_id = listing
    return Delivery.model_validate(
        {
            "id": delivery.id,
            "event_id": delivery.event_id,
            "event_type": event_type,
            "payment_id": payment_id,
            "status": delivery.status,
            "created_at": delivery.created_at,
            "attempts": delivery.attempts,
            "next_attempt_at": delivery.next_attempt_at,
            "last_attempt_at": delivery.last_attempt_at,
            "last_response_status": delivery.last_response_status,
            "last_error": delivery.last_error,
            "delivered_at": delivery.delivered_at,
        }
    )


@bp.post("")
def create_endpoint() -> tuple[Response, int, dict[str, str]]:
    """Register an endpoint; its secret is in this answer (and on rotation) only."""
    body = _parse(EndpointCreate)
    endpoint, secret = endpoints.create_endpoint(
        api.ctx(),
        api._merchant(),
        url=body.url,
        events=[e.value for e in body.events] if body.events is not None else None,
        description=body.description,
    )
    location = url_for("webhook_endpoints.get_endpoint", endpoint_id=endpoint.id)
    return jsonify(dump(_with_secret(endpoint, secret))), 201, {"Location": location}


@bp.get("")
def list_endpoints() -> Response:
    """List the merchant's endpoints, oldest first."""
    found = endpoints.list_endpoints(api.ctx(), api._merchant())
    return jsonify(dump(EndpointList(data=[_endpoint(e) for e in found])))


@bp.get("/<endpoint_id>")
def get_endpoint(endpoint_id: str) -> Response:
    """Show one endpoint."""
    return jsonify(dump(_endpoint(endpoints.get_endpoint(api.ctx(), api._merchant(), endpoint_id))))


@bp.patch("/<endpoint_id>")
def update_endpoint(endpoint_id: str) -> Response:
    """Change an endpoint's url, events, description or status."""
    body = _parse(EndpointUpdate)
    if not body.model_fields_set:
        raise ValidationFailed("send at least one of: url, events, description, status")
    changes = endpoints.EndpointChanges(
        url=body.url,
        events=[e.value for e in body.events] if body.events is not None else None,
        description=body.description,
        status=body.status,
        clear_description="description" in body.model_fields_set and body.description is None,
    )
    nulls = [
        f
        for f in ("url", "events", "status")
        if f in body.model_fields_set and getattr(body, f) is None
    ]
    if nulls:
        raise ValidationFailed(f"{', '.join(nulls)} cannot be null")
    endpoint = endpoints.update_endpoint(api.ctx(), api._merchant(), endpoint_id, changes)
    return jsonify(dump(_endpoint(endpoint)))


@bp.delete("/<endpoint_id>")
def delete_endpoint(endpoint_id: str) -> tuple[str, int]:
    """Delete an endpoint: nothing more is delivered to it."""
    endpoints.delete_endpoint(api.ctx(), api._merchant(), endpoint_id)
    return "", 204


@bp.post("/<endpoint_id>/rotate_secret")
def rotate_secret(endpoint_id: str) -> Response:
    """Give the endpoint a new secret; both sign every delivery for 24 h."""
    endpoint, secret = endpoints.rotate_secret(api.ctx(), api._merchant(), endpoint_id)
    return jsonify(dump(_with_secret(endpoint, secret)))


@bp.get("/<endpoint_id>/deliveries")
def list_deliveries(endpoint_id: str) -> Response:
    """List the endpoint's deliveries, newest first, one page at a time."""
    unknown = sorted(set(request.args) - DELIVERY_PARAMETERS)
    if unknown:
        raise ValidationFailed(f"unknown query parameter(s): {', '.join(unknown)}")
    try:
        limit = int(request.args.get("limit", "20"))
    except ValueError:
        raise ValidationFailed("limit must be an integer") from None
    page, cursor = endpoints.list_deliveries(
        api.ctx(),
        api._merchant(),
        endpoint_id,
        status=request.args.get("status") or None,
        limit=limit,
        cursor=request.args.get("cursor") or None,
    )
    return jsonify(dump(DeliveryList(data=[_delivery(d) for d in page], next_cursor=cursor)))


@bp.post("/<endpoint_id>/deliveries/<delivery_id>/retry")
def retry_delivery(endpoint_id: str, delivery_id: str) -> tuple[Response, int]:
    """Attempt a delivery again now (a failed one too)."""
    found = endpoints.retry_delivery(api.ctx(), api._merchant(), endpoint_id, delivery_id)
    return jsonify(dump(_delivery(found))), 202


@bp.post("/<endpoint_id>/recover")
def recover(endpoint_id: str) -> tuple[Response, int]:
    """Attempt again every failed delivery created since a time."""
    body = _parse(RecoverRequest)
    count = endpoints.recover_deliveries(api.ctx(), api._merchant(), endpoint_id, since=body.since)
    return jsonify(dump(RecoverResult(count=count))), 202
