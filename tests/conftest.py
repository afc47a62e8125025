"""Shared fixtures: a movable clock, real databases (SQLite and PostgreSQL), the simulator."""

from __future__ import annotations

import random
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings as hypothesis_settings
from pgserver import PgServer, require_postgres
from simhelpers import Simulator, run_simulator

from reconciler.bootstrap import Context, bootstrap
from reconciler.config import Settings
from reconciler.entrypoints.app import create_app
from reconciler.entrypoints.commands import upgrade
from reconciler.services.merchants import create_merchant

# Shared CI machines are slow and noisy: a property test must fail on its property, not
# on how long one example happened to take.
hypothesis_settings.register_profile("reconciler", deadline=None, print_blob=True)
hypothesis_settings.load_profile("reconciler")

SIM_SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLXRoZS1zaW11bGF0b3I="  # test-only


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 28, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    require_postgres()
    with PgServer() as server:
        yield server


@pytest.fixture(scope="session")
def pg_template(pg_server: PgServer) -> str:
    """A migrated database that each test copies (CREATE DATABASE … TEMPLATE is fast)."""
    name = "reconciler_template"
    url = pg_server.create_database(name)
    upgrade(Settings(database_url=url))
    from sqlalchemy import create_engine

    create_engine(url).dispose()
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
    server: PgServer = request.getfixturevalue("pg_server")
    template_name: str = request.getfixturevalue("pg_template")
    name = f"t_{uuid.uuid4().hex[:12]}"
    import psycopg

    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
    return server.url_for(name)


@pytest.fixture(scope="session")
def simulator() -> Iterator[Simulator]:
    """One simulator process for the session; tests that change its faults restore them."""
    with run_simulator(seed=7, settle_min=0, settle_max=0, no_webhooks=True) as sim:
        yield sim


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_settings(db_url: str, simulator_url: str | None = None, **overrides: Any) -> Settings:
    env = {
        "RECONCILER_DATABASE_URL": db_url,
        "RECONCILER_SIMULATOR_WEBHOOK_SECRET": SIM_SECRET,
        "RECONCILER_GATEWAY_READ_TIMEOUT_S": "2",
        "RECONCILER_GATEWAY_CREATE_TIMEOUT_S": "2",
        "RECONCILER_SWEEP_CONCURRENCY": "4",
    }
    if simulator_url:
        env["RECONCILER_SIMULATOR_URL"] = simulator_url
    env.update({f"RECONCILER_{k.upper()}": str(v) for k, v in overrides.items()})
    return Settings.from_env(env)


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


@dataclass
class MerchantAuth:
    id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@pytest.fixture
def merchant(ctx: Context) -> MerchantAuth:
    record, key = create_merchant(ctx, "acme")
    return MerchantAuth(record.id, key)


@pytest.fixture
def other_merchant(ctx: Context) -> MerchantAuth:
    record, key = create_merchant(ctx, "globex")
    return MerchantAuth(record.id, key)


def register_payment(
    client: FlaskClient,
    merchant: MerchantAuth,
    gateway_payment_id: str,
    *,
    reference: str | None = None,
    amount: int = 1000,
    currency: str = "EUR",
) -> str:
    """Register a simulator payment through the API (201 expected); return our payment id."""
    response = client.post(
        "/v1/payments",
        json={
            "merchant_reference": reference or gateway_payment_id,
            "gateway": "simulator",
            "amount": amount,
            "currency": currency,
            "gateway_payment_id": gateway_payment_id,
        },
        headers=merchant.headers,
    )
    assert response.status_code == 201, response.json
    payment_id: str = response.json["id"]
    return payment_id
