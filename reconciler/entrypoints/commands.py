"""What each CLI command does, kept apart from argument parsing."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger
from sqlalchemy import text

from reconciler.bootstrap import bootstrap
from reconciler.config import Settings
from reconciler.entrypoints import logs

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
# Any fixed 64-bit number: all replicas take the same advisory lock while migrating.
MIGRATION_LOCK_ID = 0x5EC0_4C11


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_script_location()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def _script_location() -> Path:
    override = os.environ.get("RECONCILER_MIGRATIONS_DIR")
    if override:
        return Path(override)
    if MIGRATIONS.is_dir():
        return MIGRATIONS
    # Installed as a wheel (the container image): the image keeps migrations/ in its workdir.
    return Path.cwd() / "migrations"


def upgrade(settings: Settings) -> None:
    """Migrate to head; on PostgreSQL one replica migrates while the others wait."""
    url = settings.database_url
    if url.startswith("postgresql"):
        from sqlalchemy import create_engine

        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("SET lock_timeout = '60s'"))
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            try:
                config = alembic_config(url)
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
                conn.commit()
        engine.dispose()
        return
    command.upgrade(alembic_config(url), "head")


def create_merchant(settings: Settings, name: str) -> int:
    from reconciler.services.merchants import create_merchant as create

    upgrade(settings)
    ctx = bootstrap(settings, gateways={})
    try:
        merchant, api_key = create(ctx, name)
    finally:
        ctx.close()
    print(f"merchant {merchant.id} ({merchant.name}) created; its API key, shown once:")
    print(api_key)
    return 0


def prune(settings: Settings, older_than_days: int) -> int:
    from reconciler.services.errors import ValidationFailed
    from reconciler.services.retention import prune_inbox, prune_notifications

    ctx = bootstrap(settings, gateways={})
    try:
        deleted = prune_inbox(ctx, older_than_days)
        deliveries, events = prune_notifications(ctx, older_than_days)
    except ValidationFailed as exc:
        print(f"prune: {exc.detail}", file=sys.stderr)
        return 2
    finally:
        ctx.close()
    print(f"deleted {deleted} processed webhook bodies older than {older_than_days} days")
    print(
        f"deleted {deliveries} settled notification deliveries and {events} events "
        f"older than {older_than_days} days"
    )
    return 0


def sweep_once(settings: Settings) -> int:
    from reconciler.services.sweep import Sweeper

    logs.configure(settings.log_level)
    ctx = bootstrap(settings)
    sweeper = Sweeper(ctx)
    try:
        report = sweeper.sweep_once()
    finally:
        sweeper.close()
        ctx.close()
    print(
        json.dumps(
            {
                "claimed": report.claimed,
                "polled": report.polled,
                "created": report.created,
                "held_by_breaker": report.held_by_breaker,
                "outcomes": report.outcomes,
                "duration_s": round(report.duration_s, 3),
            }
        )
    )
    return 0


def build_serving_app(settings: Settings, *, bind: str | None = None) -> Flask:
    """Build the app with its sweep started (one per worker process; see SweepJob).

    `bind` names the replica: its workers share one sweep lock, while several replicas
    on one host (different ports, same database) each sweep; the claim keeps them apart.
    """
    from reconciler.entrypoints.app import create_app
    from reconciler.entrypoints.scheduler import SweepJob
    from reconciler.services.sweep import Sweeper

    ctx = bootstrap(settings)
    sweeper = Sweeper(ctx) if settings.sweep_enabled else None
    app = create_app(ctx=ctx, sweeper=sweeper)
    if sweeper is not None:
        metrics = app.extensions["reconciler.metrics"]
        sweeper.observer = metrics.observe_sweep
        lock_name = settings.database_url if bind is None else f"{settings.database_url}|{bind}"
        job = SweepJob(sweeper, settings.sweep_interval_s, lock_name=lock_name)
        job.start()
        app.extensions["reconciler.sweep_job"] = job
    return app


class _JsonGunicornLogger(GunicornLogger):  # type: ignore[misc]
    """Send gunicorn's own messages through the root JSON handler, like every other log."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.error_log.handlers[:] = []
        self.error_log.propagate = True


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # settings newer than the installed gunicorn are skipped
                self.cfg.set(key, value)

    def load(self) -> Flask:
        return build_serving_app(self.settings, bind=str(self.options["bind"]))


def serve(settings: Settings, *, host: str | None, port: int | None) -> int:
    """Migrate, then serve with gunicorn; each worker runs the in-process sweep."""
    logs.configure(settings.log_level)
    upgrade(settings)
    bind = f"{host or settings.host}:{port or settings.port}"
    options = {
        "bind": bind,
        "workers": max(1, settings.workers),
        "worker_class": "gthread",
        "threads": int(os.environ.get("RECONCILER_THREADS", "8")),
        "timeout": 60,
        "graceful_timeout": 20,
        "accesslog": None,
        "errorlog": "-",
        "logger_class": _JsonGunicornLogger,
        "loglevel": settings.log_level.lower(),
        # gunicorn's control socket lives at one path per user: replicas sharing a host
        # would take it from each other, and nothing here uses it.
        "control_socket_disable": True,
    }
    _Gunicorn(settings, options).run()
    return 0
