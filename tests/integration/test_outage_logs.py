"""An outage is heard: failed gateway calls and a breaker's moves are logged at WARNING."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from support.app import MerchantAuth, register_payment
from support.clock import FakeClock
from support.simulator import Simulator

from reconciler.bootstrap import Context
from reconciler.services.sweep import Sweeper

NO_FAULTS = {"p_5xx": 0.0, "p_429": 0.0, "p_hang": 0.0, "latency_min_s": 0.0, "latency_max_s": 0.0}


@pytest.fixture
def sweeper(ctx: Context) -> Iterator[Sweeper]:
    sweeper = Sweeper(ctx)
    yield sweeper
    sweeper.close()


@pytest.fixture
def faults(simulator: Simulator) -> Iterator[Simulator]:
    yield simulator
    simulator.set_faults(**NO_FAULTS)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_failed_calls_and_the_breaker_opening_and_closing_are_warnings(
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    faults: Simulator,
    sweeper: Sweeper,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    threshold = ctx.settings.breaker_threshold
    for n in range(threshold + 1):
        gid = faults.create(amount=5, currency="EUR", reference=f"out{n}")["id"]
        register_payment(client, merchant, gid, reference=f"ref-out{n}")
    faults.outage(100_000)
    clock.advance(31)

    sweeper.sweep_once(clock.now)

    logged = warnings(caplog)
    failed = [m for m in logged if m.startswith("simulator gateway call failed (fetch)")]
    assert len(failed) >= threshold
    opened = [m for m in logged if m.startswith("poll breaker for simulator opened: ")]
    assert len(opened) == 1, logged
    record = next(r for r in caplog.records if r.getMessage() == opened[0])
    assert record.__dict__["target"] == "simulator"
    assert record.__dict__["reason"]  # what the last failed call said

    caplog.clear()
    faults.advance(200_000)  # the outage is over
    clock.advance(ctx.settings.breaker_max_cooldown_s + 1)
    sweeper.sweep_once(clock.now)

    assert "poll breaker for simulator closed: calls succeed again" in warnings(caplog)
