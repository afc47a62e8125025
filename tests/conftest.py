"""Shared fixtures: a movable clock, real databases (SQLite and PostgreSQL), the simulator."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings as hypothesis_settings
from support.app import MerchantAuth, make_settings
from support.clock import FakeClock
from support.postgres import PostgresServer, require_postgres, throwaway_postgres
from support.simulator import Simulator, run_simulator

from reconciler.bootstrap import Context, bootstrap
from reconciler.config import Settings
from reconciler.entrypoints.app import create_app
from reconciler.entrypoints.commands import upgrade
from reconciler.services.merchants import create_merchant

# Shared CI machines are slow and noisy: a property test must fail on its property, not
# on how long one example happened to take.
hypothesis_settings.register_profile("reconciler", deadline=None, print_blob=True)
hypothesis_settings.load_profile("reconciler")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole session (see support/postgres.py)."""
    require_postgres()
    with throwaway_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> str:
    """A migrated database that each test copies (CREATE DATABASE … TEMPLATE is fast)."""
    name = "reconciler_template"
    url = pg_server.create_database(name)
    upgrade(Settings(database_url=url))
    return name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(Settings(database_url=f"sqlite:///{path}"))
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated database: SQLite in a temp dir, or PostgreSQL from a template."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "reconciler.db"
        shutil.copy(template, target)
        return f"sqlite:///{target}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database(template=request.getfixturevalue("pg_template"))


@pytest.fixture(scope="session")
def simulator() -> Iterator[Simulator]:
    """One simulator process for the session; tests that change its faults restore them."""
    with run_simulator(seed=7, settle_min=0, settle_max=0, no_webhooks=True) as sim:
        yield sim


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ctx(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[Context]:
    context = bootstrap(
        make_settings(db_url, simulator.url), clock=clock, rand=random.Random(1).random
    )
    yield context
    context.close()


@pytest.fixture
def app(ctx: Context) -> Flask:
    return create_app(ctx=ctx)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def merchant(ctx: Context) -> MerchantAuth:
    record, key = create_merchant(ctx, "acme")
    return MerchantAuth(record.id, key)


@pytest.fixture
def other_merchant(ctx: Context) -> MerchantAuth:
    record, key = create_merchant(ctx, "globex")
    return MerchantAuth(record.id, key)
