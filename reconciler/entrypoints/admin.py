"""Operator endpoints under `/admin`, on only when RECONCILER_ADMIN_TOKEN is set."""

from __future__ import annotations

import hmac
import json
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import NotFound, Unauthorized

from reconciler.bootstrap import Context
from reconciler.entrypoints.bodies import read_body
from reconciler.entrypoints.serialize import payment_json
from reconciler.services import admin
from reconciler.services.errors import ValidationFailed

bp = Blueprint("admin", __name__, url_prefix="/admin")


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


def _body() -> dict[str, Any]:
    raw = read_body(_ctx().settings.max_body_bytes)
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("the body must be valid JSON") from None
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object")
    return body


def _note(body: dict[str, Any]) -> str:
    note = body.get("note")
    if not isinstance(note, str) or not note.strip() or len(note) > 1000:
        raise ValidationFailed("note (1 to 1000 characters) is required: say why")
    return note


@bp.get("/payments")
def list_payments() -> Response:
    """List every merchant's payments, newest first, optionally in one sync state."""
    try:
        limit = int(request.args.get("limit", "50"))
    except ValueError:
        raise ValidationFailed("limit must be an integer") from None
    page, cursor = admin.list_by_sync_state(
        _ctx(), request.args.get("sync_state") or None, limit, request.args.get("cursor") or None
    )
    return jsonify({"data": [payment_json(p) for p in page], "next_cursor": cursor})


@bp.get("/payments/<payment_id>")
def show(payment_id: str) -> Response:
    """Show any merchant's payment."""
    return jsonify(payment_json(admin.show(_ctx(), payment_id)))


@bp.post("/payments/<payment_id>/refresh")
def refresh(payment_id: str) -> tuple[Response, int]:
    """Poll the payment as soon as possible (reviving it if polling gave up)."""
    return jsonify(payment_json(admin.refresh(_ctx(), payment_id))), 202


@bp.post("/payments/<payment_id>/report")
def report(payment_id: str) -> Response:
    """Apply an operator's status report through the usual rules."""
    body = _body()
    unknown = sorted(set(body) - {"status", "gateway_status", "note"})
    if unknown:
        raise ValidationFailed(f"unknown field(s): {', '.join(unknown)}")
    status, gateway_status = body.get("status"), body.get("gateway_status")
    if not isinstance(status, str):
        raise ValidationFailed("status is required")
    if gateway_status is not None and (
        not isinstance(gateway_status, str) or len(gateway_status) > 64
    ):
        raise ValidationFailed("gateway_status must be a string of at most 64 characters")
    payment, decision = admin.report_status(_ctx(), payment_id, status, gateway_status, _note(body))
    return jsonify({"outcome": decision.outcome.value, "payment": payment_json(payment)})


@bp.post("/payments/<payment_id>/resolve")
def resolve(payment_id: str) -> Response:
    """Clear the payment's review flag."""
    return jsonify(payment_json(admin.resolve_review(_ctx(), payment_id, _note(_body()))))
