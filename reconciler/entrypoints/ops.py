"""Operations endpoints: liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from reconciler.adapters import db, repository
from reconciler.bootstrap import Context
from reconciler.entrypoints.dbtrouble import TROUBLE, describe
from reconciler.entrypoints.openapi import spec
from reconciler.entrypoints.serialize import rfc3339

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
    changed = db.file_problem(ctx.engine)
    if changed is not None:
        return jsonify({"status": "unavailable", "database": changed}), 503
    session = ctx.sessions()
    try:
        # A write transaction that is rolled back: proves the locks and the file take writes.
        last = repository.last_sweep_at(session)
        repository.probe_write(session, now)
    except TROUBLE as exc:
        return jsonify({"status": "unavailable", "database": f"error: {describe(exc)}"}), 503
    finally:
        session.rollback()
        session.close()
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
