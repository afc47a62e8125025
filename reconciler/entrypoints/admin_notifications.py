"""Operator endpoints for notifications under `/admin`: failing endpoints, deliveries."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import NotFound, Unauthorized

from reconciler.bootstrap import Context
from reconciler.services import notify_admin
from reconciler.services.errors import ValidationFailed
from reconciler.services.notifications import timestamp
from reconciler.services.notify_admin import EndpointHealth, OperatorDelivery

bp = Blueprint("admin_notifications", __name__, url_prefix="/admin")


def _ctx() -> Context:
    context: Context = current_app.extensions["reconciler"]
    return context


@bp.before_request
def _authenticate() -> None:
    token = _ctx().settings.admin_token
    if not token:
        raise NotFound("admin endpoints are off (set RECONCILER_ADMIN_TOKEN)")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise Unauthorized("send the admin token as `Authorization: Bearer <token>`")


def _limit() -> int:
    try:
        return int(request.args.get("limit", "50"))
    except ValueError:
        raise ValidationFailed("limit must be an integer") from None


def _time(value: datetime | None) -> str | None:
    return None if value is None else timestamp(value)


def _endpoint(found: EndpointHealth) -> dict[str, Any]:
    endpoint, pending, failed = found
    return {
        "id": endpoint.id,
        "merchant_id": endpoint.merchant_id,
        "url": endpoint.url,
        "status": endpoint.status,
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": _time(endpoint.failing_since),
        "pending_deliveries": pending,
        "failed_deliveries": failed,
        "created_at": _time(endpoint.created_at),
        "updated_at": _time(endpoint.updated_at),
    }


def _delivery(found: OperatorDelivery) -> dict[str, Any]:
    delivery, event_type, payment_id, merchant_id = found
    return {
        "id": delivery.id,
        "merchant_id": merchant_id,
        "endpoint_id": delivery.endpoint_id,
        "event_id": delivery.event_id,
        "event_type": event_type,
        "payment_id": payment_id,
        "status": delivery.status,
        "created_at": _time(delivery.created_at),
        "attempts": delivery.attempts,
        "next_attempt_at": _time(delivery.next_attempt_at),
        "last_attempt_at": _time(delivery.last_attempt_at),
        "last_response_status": delivery.last_response_status,
        "last_error": delivery.last_error,
        "delivered_at": _time(delivery.delivered_at),
    }


@bp.get("/webhook_endpoints")
def list_endpoints() -> Response:
    """List every merchant's endpoints, the longest failing first (`status=disabled|failing`)."""
    found = notify_admin.endpoints_by_health(_ctx(), request.args.get("status") or None, _limit())
    return jsonify({"data": [_endpoint(e) for e in found]})


@bp.get("/deliveries")
def list_deliveries() -> Response:
    """List every merchant's deliveries, newest first, by status and endpoint."""
    page, cursor = notify_admin.deliveries(
        _ctx(),
        status=request.args.get("status") or None,
        endpoint_id=request.args.get("endpoint_id") or None,
        limit=_limit(),
        cursor=request.args.get("cursor") or None,
    )
    return jsonify({"data": [_delivery(d) for d in page], "next_cursor": cursor})
