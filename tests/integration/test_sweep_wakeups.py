"""The sweep wakes when a row is due, and reads nothing while nothing can be."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event
from support.app import MerchantAuth, make_settings, register_payment
from support.clock import FakeClock
from support.simulator import Simulator

from reconciler.bootstrap import Context, bootstrap
from reconciler.entrypoints.app import create_app
from reconciler.entrypoints.scheduler import SweepJob
from reconciler.services.merchants import create_merchant
from reconciler.services.sweep import HEARTBEAT_S, IDLE_CHECK_S, Sweeper


@pytest.fixture
def live_ctx(db_url: str, simulator: Simulator) -> Iterator[Context]:
    """A context on the real clock, with a sweep interval far longer than the test."""
    settings = make_settings(
        db_url,
        simulator.url,
        sweep_interval_s=600,
        poll_first_delay_s=0.3,
    )
    context = bootstrap(settings, rand=random.Random(3).random)
    yield context
    context.close()


def test_a_registration_wakes_the_sweep_long_before_its_interval(
    live_ctx: Context, simulator: Simulator, tmp_path: Any
) -> None:
    record, key = create_merchant(live_ctx, "acme")
    client = create_app(ctx=live_ctx).test_client()
    sweeper = Sweeper(live_ctx)
    job = SweepJob(sweeper, 600, lock_name=str(tmp_path))
    job.start()
    try:
        gid = simulator.create(amount=1000, currency="EUR", reference="wake")["id"]
        register_payment(client, MerchantAuth(record.id, key), gid)
        deadline = time.monotonic() + 30  # a bound for a loaded machine, not a timing claim
        while time.monotonic() < deadline:
            if any(c["kind"] == "fetch" for c in simulator.calls()["payments"][gid]):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the sweep was not woken for the registered payment")
    finally:
        job.stop()


def test_an_idle_sweeper_reads_nothing_between_its_checks(ctx: Context) -> None:
    clock: FakeClock = ctx.clock  # type: ignore[assignment]
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sweeper = Sweeper(ctx)
    sweeper.tick()  # the first tick reads when the next row is due: nothing is
    event.listen(ctx.engine, "before_cursor_execute", count)
    try:
        for _ in range(5):
            clock.advance(1)
            sweeper.tick()
        assert statements == []
        clock.advance(HEARTBEAT_S)
        sweeper.tick()
        assert statements and all("heartbeat" in s.lower() for s in statements)
        statements.clear()
        clock.advance(IDLE_CHECK_S)
        sweeper.tick()
        assert any("payments" in s for s in statements)  # the idle check looks again
    finally:
        event.remove(ctx.engine, "before_cursor_execute", count)
        sweeper.close()


class HeldSweeper(Sweeper):
    """A sweeper whose first tick waits until the test lets it go."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.ticks = 0
        self.first_started = threading.Event()
        self.release = threading.Event()

    def tick(self) -> None:
        self.ticks += 1
        if self.ticks == 1:
            self.first_started.set()
            self.release.wait(30)


def test_a_wake_asked_for_while_a_woken_sweep_still_runs_is_not_lost(
    ctx: Context, tmp_path: Any
) -> None:
    sweeper = HeldSweeper(ctx)
    job = SweepJob(sweeper, 600, lock_name=str(tmp_path))
    job.start()
    try:
        job.wake(datetime.now(UTC))
        assert sweeper.first_started.wait(30)
        job.wake(datetime.now(UTC))  # the first woken tick is still running
        deadline = time.monotonic() + 30  # a bound for a loaded machine, not a timing claim
        while sweeper.ticks < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sweeper.ticks >= 2
    finally:
        sweeper.release.set()
        job.stop()


def test_a_tick_with_every_poll_slot_busy_does_not_ask_to_be_woken_for_due_rows(
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    simulator: Simulator,
) -> None:
    clock: FakeClock = ctx.clock  # type: ignore[assignment]
    slots = ctx.settings.sweep_concurrency
    for n in range(slots + 2):  # more due rows than poll slots
        gid = simulator.create(amount=5, currency="EUR", reference=f"busy{n}")["id"]
        register_payment(client, merchant, gid, reference=f"busy{n}", amount=5)
    clock.advance(3600)
    simulator.set_faults(latency_min_s=2.0, latency_max_s=2.0)  # the calls stay in flight
    sweeper = Sweeper(ctx)
    asked: list[datetime] = []
    main = threading.current_thread()

    def on_wake(at: datetime) -> None:
        if threading.current_thread() is main:  # asked by the tick itself, not by a call ending
            asked.append(at)

    sweeper.on_wake = on_wake
    try:
        sweeper.tick()  # claims a row per slot; the other due rows wait for a slot
        # Waking now would find no poll slot free: the tick would run again and again,
        # claiming nothing, until a call ends (and a call ending wakes it anyway).
        assert asked == []
    finally:
        sweeper.close()
        simulator.set_faults(latency_min_s=0.0, latency_max_s=0.0)
