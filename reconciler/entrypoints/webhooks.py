"""Gateway webhooks: `POST /webhooks/<gateway>` (the `default` account) and
`POST /webhooks/<gateway>/<account_id>` (a merchant's own account)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from reconciler.bootstrap import Context
from reconciler.domain.ownership import DEFAULT_ACCOUNT
from reconciler.entrypoints.bodies import read_body
from reconciler.services.errors import SignatureRejected, WebhookUnreadable
from reconciler.services.webhooks import ingest_webhook

bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks/<gateway>")
@bp.post("/webhooks/<gateway>/<account_id>")
def receive(gateway: str, account_id: str = DEFAULT_ACCOUNT) -> Response:
    """Verify, store and apply one gateway event before answering."""
    ctx: Context = current_app.extensions["reconciler"]
    metrics = current_app.extensions["reconciler.metrics"]
    body = read_body(ctx.settings.max_body_bytes)
    try:
        result = ingest_webhook(ctx, gateway, request.headers, body, account_id)
    except SignatureRejected:
        metrics.webhook(gateway, "invalid_signature")
        raise
    except WebhookUnreadable:
        metrics.webhook(gateway, "malformed")
        raise
    metrics.webhook(gateway, result.result.value)
    return jsonify(
        {
            "received": True,
            "event_id": result.event_id,
            "result": result.result.value,
            "outcome": result.outcome,
        }
    )
