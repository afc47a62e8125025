"""The merchant API: `/v1/payments` and its sub-resources."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, url_for
from werkzeug.exceptions import Unauthorized

from reconciler.adapters.models import Merchant
from reconciler.bootstrap import Context
from reconciler.entrypoints.bodies import read_body
from reconciler.entrypoints.serialize import event_json, payment_json
from reconciler.services import merchants, payments
from reconciler.services.errors import ValidationFailed

bp = Blueprint("payments", __name__, url_prefix="/v1")

LIST_PARAMETERS = frozenset({"status", "gateway", "limit", "cursor"})


def ctx() -> Context:
    context: Context = current_app.extensions["reconciler"]
    return context


@bp.before_request
def _authenticate() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("send your API key as `Authorization: Bearer <key>`")
    merchant = merchants.authenticate(ctx(), key.strip())
    if merchant is None:
        raise Unauthorized("unknown API key")
    g.merchant = merchant


def _merchant() -> Merchant:
    merchant: Merchant = g.merchant
    return merchant


def _json_body() -> Any:
    raw = read_body(ctx().settings.max_body_bytes)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("the body must be valid JSON") from None


@bp.post("/payments")
def create_payment() -> tuple[Response, int, dict[str, str]]:
    """Register a payment (or create it at the gateway); idempotent on merchant_reference."""
    body = payments.PaymentRequest.parse(_json_body())
    payment, created = payments.register_payment(ctx(), _merchant(), body)
    location = url_for("payments.get_payment", payment_id=payment.id)
    return jsonify(payment_json(payment)), 201 if created else 200, {"Location": location}


@bp.get("/payments/<payment_id>")
def get_payment(payment_id: str) -> Response:
    """Show one payment."""
    return jsonify(payment_json(payments.get_payment(ctx(), _merchant(), payment_id)))


@bp.get("/payments")
def list_payments() -> Response:
    """List the merchant's payments, newest first, one page at a time."""
    # A misspelt filter (`?stauts=failed`) must not silently list every payment.
    unknown = sorted(set(request.args) - LIST_PARAMETERS)
    if unknown:
        raise ValidationFailed(f"unknown query parameter(s): {', '.join(unknown)}")
    raw_limit = request.args.get("limit", "20")
    try:
        limit = int(raw_limit)
    except ValueError:
        raise ValidationFailed("limit must be an integer") from None
    page, cursor = payments.list_payments(
        ctx(),
        _merchant(),
        status=request.args.get("status") or None,
        gateway=request.args.get("gateway") or None,
        limit=limit,
        cursor=request.args.get("cursor") or None,
    )
    return jsonify({"data": [payment_json(p) for p in page], "next_cursor": cursor})


@bp.get("/payments/<payment_id>/events")
def payment_events(payment_id: str) -> Response:
    """Show the payment's timeline: every report, applied or not."""
    events = payments.payment_timeline(ctx(), _merchant(), payment_id)
    return jsonify({"data": [event_json(e) for e in events]})


@bp.post("/payments/<payment_id>/refresh")
def refresh_payment(payment_id: str) -> tuple[Response, int]:
    """Poll the payment as soon as possible (reviving it if polling gave up)."""
    payment = payments.refresh_payment(ctx(), _merchant(), payment_id)
    return jsonify(payment_json(payment)), 202
