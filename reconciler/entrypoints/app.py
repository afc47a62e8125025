"""The Flask application factory."""

from __future__ import annotations

from flask import Flask

from reconciler.bootstrap import Context, bootstrap
from reconciler.config import Settings
from reconciler.entrypoints import (
    accounts,
    admin,
    admin_headers,
    admin_notifications,
    admin_ui,
    api,
    dbtrouble,
    endpoints,
    ops,
    problems,
    webhooks,
)
from reconciler.entrypoints.metrics import Metrics
from reconciler.services.sweep import Sweeper


def create_app(
    settings: Settings | None = None,
    *,
    ctx: Context | None = None,
    sweeper: Sweeper | None = None,
) -> Flask:
    """Build the app; pass a context (tests) or settings (default: from the environment)."""
    ctx = ctx or bootstrap(settings or Settings.from_env())
    app = Flask("reconciler")
    app.config["MAX_CONTENT_LENGTH"] = ctx.settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["reconciler"] = ctx
    metrics = Metrics(ctx)
    metrics.sweeper = sweeper
    metrics.instrument(ctx.gateways)
    metrics.install(app)
    app.extensions["reconciler.metrics"] = metrics
    problems.install(app)
    dbtrouble.install(app)
    admin_headers.install(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(endpoints.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(admin_ui.bp)
    app.register_blueprint(admin_notifications.bp)
    app.register_blueprint(accounts.admin_bp)
    app.register_blueprint(accounts.merchant_bp)
    return app
