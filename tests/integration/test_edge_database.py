"""Database trouble: a quick 503 with Retry-After, `/readyz` says so, nothing 2xx is lost."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy import make_url, text
from support.clock import FakeClock
from support.edge import TRACKED, edge_app, edge_context, post, signed

from reconciler.adapters import db
from reconciler.adapters.db import TROUBLE, make_engine, sqlite_path
from reconciler.adapters.models import WebhookInbox
from reconciler.bootstrap import Context


@pytest.fixture
def edge(db_url: str, clock: FakeClock) -> Iterator[tuple[Context, Flask]]:
    with edge_context(db_url, clock, sweep_enabled="0") as ctx:
        app, _ = edge_app(ctx)
        yield ctx, app


@contextmanager
def writes_blocked(db_url: str) -> Iterator[None]:
    """Hold the database's write locks from another connection, as another process would."""
    if db_url.startswith("sqlite"):
        path = sqlite_path(db_url)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    url = make_url(db_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False)) as conn:
        conn.execute("LOCK TABLE payments, payment_events, webhook_events IN ACCESS EXCLUSIVE MODE")
        yield
        conn.rollback()


def webhook(app: Flask, clock: FakeClock, event_id: str) -> Any:
    data = {
        "id": TRACKED["simulator"],
        "status": "processing",
        "updated_at": clock.now.isoformat(),
    }
    body = json.dumps({"type": "payment.processing", "data": data}).encode()
    headers = signed("simulator", body, int(clock.now.timestamp()), event_id)
    return post(app.test_client(), "simulator", body, headers)


def stored(ctx: Context, event_id: str) -> bool:
    with ctx.read() as session:
        return session.query(WebhookInbox).filter_by(gateway_event_id=event_id).count() == 1


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0


def test_locked_writes_give_a_503_then_work_again_and_readyz_follows(
    edge: tuple[Context, Flask], clock: FakeClock, db_url: str
) -> None:
    ctx, app = edge
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    with writes_blocked(db_url):
        assert_unavailable(webhook(app, clock, "evt-locked"))
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json["status"] == "unavailable"
    assert not stored(ctx, "evt-locked"), "a 503 stores nothing: the gateway redelivers"
    assert client.get("/readyz").status_code == 200
    assert webhook(app, clock, "evt-locked").status_code == 200
    assert stored(ctx, "evt-locked")


@pytest.fixture
def pg_url(pg_server: Any, pg_template: str) -> str:
    """A fresh migrated PostgreSQL database (like `db_url`, PostgreSQL only)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    url: str = pg_server.url_for(name)
    return url


def admin(pg_server: Any, *statements: str) -> None:
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.mark.postgres
def test_a_postgres_database_that_refuses_connections_gives_503s_until_it_is_back(
    clock: FakeClock, pg_server: Any, pg_url: str
) -> None:
    name = make_url(pg_url).database
    with edge_context(pg_url, clock, sweep_enabled="0") as ctx:
        app, _ = edge_app(ctx)
        client = app.test_client()
        admin(
            pg_server,
            f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
        )
        try:
            assert_unavailable(webhook(app, clock, "evt-down"))
            assert client.get("/readyz").status_code == 503
        finally:
            admin(pg_server, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert client.get("/readyz").status_code == 200
        assert webhook(app, clock, "evt-down").status_code == 200
        assert stored(ctx, "evt-down")


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_sqlite_file_deleted_or_replaced_under_the_service_is_noticed(
    tmp_path: Path, clock: FakeClock, sqlite_template: Path, how: str
) -> None:
    path = tmp_path / "reconciler.db"
    shutil.copy(sqlite_template, path)
    with edge_context(f"sqlite:///{path}", clock, sweep_enabled="0") as ctx:
        app, _ = edge_app(ctx)
        client = app.test_client()
        assert client.get("/readyz").status_code == 200
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        if how == "replaced":
            shutil.copy(sqlite_template, path)
        ready = client.get("/readyz")
        assert ready.status_code == 503 and how in ready.json["database"]
        # Writes are refused too: a 2xx for a write to a file nobody will read again is a loss.
        assert_unavailable(webhook(app, clock, "evt-ghost"))


def test_a_new_sqlite_database_and_its_wal_are_readable_by_the_owner_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fresh" / "reconciler.db"
    old = os.umask(0o022)
    try:
        engine = make_engine(f"sqlite:///{path}")
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        files = [Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm")]
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files if f.exists()}
        engine.dispose()
    finally:
        os.umask(old)
    assert modes and set(modes.values()) == {0o600}, modes
    assert "reconciler.db-wal" in modes


def backend_pids(engine: Any) -> set[int]:
    with engine.connect() as conn:
        return {conn.execute(text("SELECT pg_backend_pid()")).scalar_one()}


def kill_backends(pg_server: Any, pids: set[int]) -> None:
    admin(pg_server, *(f"SELECT pg_terminate_backend({pid})" for pid in pids))


@pytest.mark.postgres
def test_a_recently_used_connection_is_not_pinged_so_its_death_is_a_retryable_error(
    pg_server: Any, pg_url: str
) -> None:
    engine = make_engine(pg_url, pool_size=1)
    try:
        kill_backends(pg_server, backend_pids(engine))
        # No round trip at check-out: the first use meets the dead connection ...
        with pytest.raises(TROUBLE), engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        # ... which invalidates the pool, so the retry gets a fresh one.
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_connection_idle_past_the_limit_is_pinged_and_replaced_when_dead(
    pg_server: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(pg_url, pool_size=1)
    try:
        old = backend_pids(engine)
        kill_backends(pg_server, old)
        monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
        assert backend_pids(engine).isdisjoint(old)
    finally:
        engine.dispose()
