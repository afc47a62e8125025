"""Gateway webhooks: `POST /webhooks/<gateway>`."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from reconciler.adapters.gateways.base import InvalidSignature, MalformedWebhook
from reconciler.bootstrap import Context
from reconciler.entrypoints.bodies import read_body
from reconciler.entrypoints.problems import problem
from reconciler.services.webhooks import ingest_webhook

bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks/<gateway>")
def receive(gateway: str) -> Response:
    """Verify, store and apply one gateway event before answering."""
    ctx: Context = current_app.extensions["reconciler"]
    metrics = current_app.extensions["reconciler.metrics"]
    body = read_body(ctx.settings.max_body_bytes)
    try:
        result = ingest_webhook(ctx, gateway, dict(request.headers), body)
    except InvalidSignature as exc:
        metrics.webhook(gateway, "invalid_signature")
        return problem(401, "Invalid signature", str(exc) or "signature verification failed")
    except MalformedWebhook as exc:
        metrics.webhook(gateway, "malformed")
        return problem(400, "Malformed webhook", str(exc) or "the webhook cannot be read")
    metrics.webhook(gateway, result.result.value)
    return jsonify(
        {
            "received": True,
            "event_id": result.event_id,
            "result": result.result.value,
            "outcome": result.outcome,
        }
    )
