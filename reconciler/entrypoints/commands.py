"""What each CLI command does, kept apart from argument parsing."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from flask import Flask
from sqlalchemy import text

from reconciler.bootstrap import bootstrap
from reconciler.config import Settings
from reconciler.entrypoints import logs

# Any fixed 64-bit number: all replicas take the same advisory lock while migrating.
MIGRATION_LOCK_ID = 0x5EC0_4C11


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_script_location()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def _script_location() -> Path:
    """Find the Alembic scripts through the package: the wheel ships them as a subpackage."""
    try:
        return Path(str(resources.files("reconciler.migrations")))
    except ModuleNotFoundError:
        # A checkout put on sys.path without installing: the scripts sit beside the package.
        return Path(__file__).resolve().parents[2] / "migrations"


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


def downgrade(settings: Settings, revision: str) -> str:
    """Migrate down to `revision` (a rollback before running an older release); return it."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    command.downgrade(alembic_config(settings.database_url), revision)
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision() or "base"
    finally:
        engine.dispose()


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


def list_merchants(settings: Settings) -> int:
    from reconciler.services.merchants import list_merchants as listed

    upgrade(settings)
    ctx = bootstrap(settings, gateways={})
    try:
        merchants = listed(ctx)
    finally:
        ctx.close()
    for merchant in merchants:
        print(f"{merchant.id}\t{merchant.name}\t{merchant.created_at.isoformat()}")
    return 0


def rotate_merchant_key(settings: Settings, name_or_id: str, grace: timedelta) -> int:
    from reconciler.services.errors import ServiceError
    from reconciler.services.merchants import rotate_key

    upgrade(settings)
    ctx = bootstrap(settings, gateways={})
    try:
        merchant, api_key = rotate_key(ctx, name_or_id, grace)
    except ServiceError as exc:
        print(f"rotate-key: {exc.detail}", file=sys.stderr)
        return 2
    finally:
        ctx.close()
    until = merchant.previous_key_expires_at
    old = f"works until {until.isoformat()}" if until else "no longer works"
    print(f"merchant {merchant.id} ({merchant.name}): the old key {old}; the new key, shown once:")
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
    from reconciler.services import reliability
    from reconciler.services.sweep import Sweeper

    logs.configure(settings.log_level)
    ctx = bootstrap(settings)
    sweeper = Sweeper(ctx)
    try:
        report = sweeper.sweep_once()
        reliability.flush(ctx)  # the terminal statuses its polls found first
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


def seal_clear(settings: Settings) -> None:
    """Encrypt secrets an earlier version stored in clear (once a key is configured)."""
    from reconciler.services.secrets import seal_clear_secrets

    ctx = bootstrap(settings, gateways={})
    try:
        seal_clear_secrets(ctx)
    finally:
        ctx.close()


def build_serving_app(settings: Settings, *, bind: str | None = None) -> Flask:
    """Build the app with its sweep started (one per worker process; see SweepJob).

    `bind` names the replica: its workers share one sweep lock, while several replicas
    on one host (different ports, same database) each sweep; the claim keeps them apart.
    """
    from reconciler.entrypoints.app import create_app
    from reconciler.entrypoints.reliability_job import ReliabilityJob
    from reconciler.entrypoints.scheduler import SweepJob
    from reconciler.services.sweep import Sweeper

    ctx = bootstrap(settings)
    sweeper = Sweeper(ctx) if settings.sweep_enabled else None
    app = create_app(ctx=ctx, sweeper=sweeper)
    counts = ReliabilityJob(ctx)
    counts.start()
    app.extensions["reconciler.reliability_job"] = counts
    if sweeper is not None:
        metrics = app.extensions["reconciler.metrics"]
        sweeper.observer = metrics.observe_sweep
        lock_name = settings.database_url if bind is None else f"{settings.database_url}|{bind}"
        job = SweepJob(
            sweeper, settings.sweep_interval_s, lock_name=lock_name, temp_dir=settings.temp_dir
        )
        job.start()
        app.extensions["reconciler.sweep_job"] = job
    return app


def serve(settings: Settings, *, host: str | None, port: int | None) -> int:
    """Migrate, then serve (see entrypoints/server.py); each process runs the in-process sweep."""
    from reconciler.entrypoints import server
    from reconciler.entrypoints.scheduler import lock_dir

    logs.configure(settings.log_level)
    if settings.sweep_enabled:
        lock_dir(settings.temp_dir)  # before migrating: a read-only root says so in one line
    upgrade(settings)
    seal_clear(settings)
    return server.serve(settings, host or settings.host, port or settings.port)
