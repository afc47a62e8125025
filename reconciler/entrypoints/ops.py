"""Operations endpoints: liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from reconciler.bootstrap import Context
from reconciler.domain.times import rfc3339
from reconciler.entrypoints.openapi import spec
from reconciler.services import health

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Say the process is alive."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Say whether the database takes writes now and a sweep finished recently."""
    ctx: Context = current_app.extensions["reconciler"]
    now = ctx.clock()
    ready = health.readiness(ctx)
    if ready.problem is not None:
        return jsonify({"status": "unavailable", "database": ready.problem}), 503
    last = ready.last_sweep_at
    checks = {"database": "ok", "last_sweep_at": rfc3339(last)}
    if ctx.settings.sweep_enabled:
        age = (now - last).total_seconds() if last else None
        if age is None or age > ctx.settings.ready_max_sweep_age_s:
            return jsonify({"status": "unavailable", **checks, "sweep": "not recent"}), 503
    return jsonify({"status": "ok", **checks}), 200


@bp.get("/metrics")
def metrics() -> Response:
    """Expose metrics in the Prometheus text format."""
    registry = current_app.extensions["reconciler.metrics"].registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
def openapi() -> Response:
    """Describe the API as OpenAPI 3.1."""
    ctx: Context = current_app.extensions["reconciler"]
    return jsonify(
        spec(
            gateways=[g for g in ctx.gateways if ctx.can_register(g)],
            admin=bool(ctx.settings.admin_token),
        )
    )
