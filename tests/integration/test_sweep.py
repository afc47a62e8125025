"""The sweep against a real simulator process, with the service's clock moved by hand."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from support.app import MerchantAuth, make_settings, register_payment
from support.clock import FakeClock
from support.simulator import Simulator

from reconciler.adapters.models import Payment
from reconciler.bootstrap import Context, bootstrap
from reconciler.domain.policy import max_polls
from reconciler.services.sweep import Sweeper

NO_FAULTS = {"p_5xx": 0.0, "p_429": 0.0, "p_hang": 0.0, "latency_min_s": 0.0, "latency_max_s": 0.0}


@pytest.fixture
def sweeper(ctx: Context) -> Iterator[Sweeper]:
    sweeper = Sweeper(ctx)
    yield sweeper
    sweeper.close()


@pytest.fixture
def faults(simulator: Simulator) -> Iterator[Simulator]:
    """Let a test change the simulator's faults; put them back afterwards."""
    yield simulator
    simulator.set_faults(**NO_FAULTS)
    simulator.advance(10_000)  # any outage a test started is over


def register(client: FlaskClient, merchant: MerchantAuth, gateway_payment_id: str) -> str:
    return register_payment(
        client, merchant, gateway_payment_id, reference=f"ref-{gateway_payment_id}"
    )


def payments(ctx: Context) -> dict[str, Payment]:
    with ctx.sessions() as session:
        return {p.id: p for p in session.query(Payment).all()}


def run_until_quiet(sweeper: Sweeper, ctx: Context, clock: FakeClock, rounds: int = 200) -> int:
    """Jump the clock to the next due poll and sweep, until nothing is scheduled."""
    for sweeps in range(rounds):
        due = [p.next_poll_at for p in payments(ctx).values() if p.next_poll_at is not None]
        if not due:
            return sweeps
        clock.now = max(clock.now, min(due))
        sweeper.sweep_once(clock.now)
    raise AssertionError("the schedule did not settle")


def fetches(sim: Simulator, gateway_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    calls = sim.calls()["payments"]
    return {gid: [c for c in calls[gid] if c["kind"] == "fetch"] for gid in gateway_ids}


def test_payments_whose_webhooks_never_come_converge_by_polling_alone(
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    simulator: Simulator,
    sweeper: Sweeper,
    clock: FakeClock,
) -> None:
    gateway_ids = [
        simulator.create(amount=1000, currency="EUR", reference=f"r{n}")["id"] for n in range(12)
    ]
    ids = {gid: register(client, merchant, gid) for gid in gateway_ids}
    assert sweeper.sweep_once(clock.now).claimed == 0  # still inside the webhook grace period
    clock.advance(30)
    report = sweeper.sweep_once(clock.now)
    assert report.polled == 12
    truth = simulator.truth()["payments"]
    rows = payments(ctx)
    for gid, pid in ids.items():
        assert rows[pid].status == truth[gid]["status"]
        assert rows[pid].sync_state == "settled"
        assert rows[pid].status_source == "poll"
    assert all(len(c) == 1 for c in fetches(simulator, gateway_ids).values())


def test_a_pending_payment_is_polled_on_the_backoff_schedule(
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    simulator: Simulator,
    sweeper: Sweeper,
    clock: FakeClock,
) -> None:
    gid = simulator.create(amount=1000, currency="EUR", reference="slow", settle_after_s=86_400)[
        "id"
    ]
    pid = register(client, merchant, gid)
    seen = []
    for _ in range(6):
        clock.now = payments(ctx)[pid].next_poll_at or clock.now
        sweeper.sweep_once(clock.now)
        row = payments(ctx)[pid]
        assert row.next_poll_at is not None
        seen.append((row.next_poll_at - clock.now).total_seconds())
    # The undithered delays are 30, 60, 120, 240, 480, 960; jitter keeps at least half.
    for delay, nominal in zip(seen, [30, 60, 120, 240, 480, 960], strict=True):
        assert nominal / 2 <= delay <= nominal
    assert payments(ctx)[pid].sync_state == "polling"
    assert payments(ctx)[pid].poll_attempts == 6


def test_error_storms_back_off_and_converge_within_the_poll_budget(
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    faults: Simulator,
    sweeper: Sweeper,
    clock: FakeClock,
) -> None:
    gateway_ids = [
        faults.create(amount=1000, currency="EUR", reference=f"s{n}")["id"] for n in range(10)
    ]
    ids = {gid: register(client, merchant, gid) for gid in gateway_ids}
    faults.set_faults(p_5xx=0.4, p_429=0.3, retry_after_s=90)
    clock.advance(30)
    run_until_quiet(sweeper, ctx, clock)
    truth = faults.truth()["payments"]
    rows = payments(ctx)
    assert {rows[pid].status for pid in ids.values()} <= {"succeeded", "failed", "canceled"}
    assert all(rows[pid].status == truth[gid]["status"] for gid, pid in ids.items())
    budget = max_polls(ctx.settings.policy("simulator"))
    answers = fetches(faults, gateway_ids)
    # The storm reached the gateway calls (which fault each call drew is random).
    assert any(c["answer"] != 200 for calls in answers.values() for c in calls)
    assert all(len(calls) <= budget for calls in answers.values())


def test_retry_after_is_a_floor_for_the_next_poll(
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    faults: Simulator,
    sweeper: Sweeper,
    clock: FakeClock,
) -> None:
    pid = register(
        client, merchant, faults.create(amount=1000, currency="EUR", reference="ra")["id"]
    )
    faults.set_faults(p_429=1.0, retry_after_s=600)
    clock.advance(30)
    sweeper.sweep_once(clock.now)
    row = payments(ctx)[pid]
    assert row.next_poll_at is not None
    assert row.next_poll_at - clock.now >= timedelta(seconds=600)
    assert row.last_error and "429" in row.last_error


def test_an_outage_trips_the_breaker_and_costs_a_bounded_number_of_calls(
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    faults: Simulator,
    sweeper: Sweeper,
    clock: FakeClock,
) -> None:
    gateway_ids = [
        faults.create(amount=1000, currency="EUR", reference=f"o{n}")["id"] for n in range(60)
    ]
    ids = {gid: register(client, merchant, gid) for gid in gateway_ids}
    faults.outage(100_000)
    clock.advance(30)
    start = clock.now
    # One simulated hour of outage, sweeping every second of service time.
    while clock.now < start + timedelta(hours=1):
        sweeper.sweep_once(clock.now)
        clock.advance(5)
    during = sum(len(c) for c in fetches(faults, gateway_ids).values())
    breaker = ctx.settings
    # threshold failures (plus what the pool had in flight), then one probe per cool-down,
    # the cool-down doubling from 30 s up to 600 s: far below 60 payments x their schedule.
    assert during <= breaker.breaker_threshold + breaker.sweep_concurrency + 12
    assert sweeper.breakers["simulator"].state.value in ("open", "half_open")
    # Recovery: the held payments come back spread over the cool-down, not as one burst.
    faults.advance(200_000)
    recovery_at = clock.now
    run_until_quiet(sweeper, ctx, clock)
    truth = faults.truth()["payments"]
    rows = payments(ctx)
    assert all(rows[pid].status == truth[gid]["status"] for gid, pid in ids.items())
    # Each payment settles on its first successful poll, so last_polled_at is that poll.
    settled_at = sorted(rows[pid].last_polled_at or recovery_at for pid in ids.values())
    spread = (settled_at[-1] - settled_at[0]).total_seconds()
    assert spread > 60, "recovery arrived as one burst"
    print(
        f"\noutage: 60 payments, 1 h of outage, {during} gateway calls during it; "
        f"recovery spread over {spread:.0f} s"
    )


def test_creation_retried_after_an_outage_creates_exactly_one_gateway_payment(
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    faults: Simulator,
    sweeper: Sweeper,
    clock: FakeClock,
) -> None:
    # The gateway does the work but the answer never arrives (a hang past our timeout).
    faults.set_faults(p_hang=1.0, hang_s=4)
    response = client.post(
        "/v1/payments",
        json={
            "merchant_reference": "create-me",
            "gateway": "simulator",
            "amount": 700,
            "currency": "INR",
        },
        headers=merchant.headers,
    )
    assert response.status_code == 201
    created = response.json
    assert created["gateway_payment_id"] is None
    assert created["sync"]["last_error"].startswith("create:")
    faults.set_faults(**NO_FAULTS)
    run_until_quiet(sweeper, ctx, clock)
    row = payments(ctx)[created["id"]]
    assert row.gateway_payment_id is not None
    assert faults.stats()["max_creations_per_key"] == 1
    creates = [
        c for c in faults.calls()["payments"][row.gateway_payment_id] if c["kind"] == "create"
    ]
    assert len(creates) >= 2  # the lost answer, then the retry with the same key
    assert row.status == faults.truth()["payments"][row.gateway_payment_id]["status"]


def test_a_sweep_killed_mid_poll_loses_nothing(
    db_url: str,
    faults: Simulator,
    tmp_path: Any,
) -> None:
    clock = FakeClock(datetime.now(UTC) - timedelta(seconds=60))
    settings = make_settings(db_url, faults.url, lease_s=40, gateway_read_timeout_s=30)
    ctx = bootstrap(settings, clock=clock)
    from reconciler.services.merchants import create_merchant
    from reconciler.services.payments import PaymentRequest, register_payment

    merchant, _ = create_merchant(ctx, "acme")
    ids = []
    for n in range(5):
        gid = faults.create(amount=5, currency="EUR", reference=f"k{n}")["id"]
        payment, _ = register_payment(
            ctx, merchant, PaymentRequest(f"k{n}", "simulator", 5, "EUR", gid)
        )
        ids.append(payment.id)
    faults.set_faults(p_hang=1.0, hang_s=30)
    env = {
        **os.environ,
        **{
            f"RECONCILER_{k}": v
            for k, v in {
                "DATABASE_URL": db_url,
                "SIMULATOR_URL": faults.url,
                "SIMULATOR_WEBHOOK_SECRET": "whsec_dGVzdA==",
                "LEASE_S": "40",
                "GATEWAY_READ_TIMEOUT_S": "30",
            }.items()
        },
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler.entrypoints.cli", "sweep", "--once"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            leased = [p for p in payments(ctx).values() if p.lease_owner]
            if (
                len(leased) == 5
                and sum(
                    1
                    for c in faults.calls()["payments"].values()
                    for x in c
                    if x["answer"] == "hang"
                )
                >= 5
            ):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the sweep never got its calls out")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    faults.set_faults(**NO_FAULTS)
    sweeper = Sweeper(ctx)
    try:
        clock.now = datetime.now(UTC)
        assert sweeper.sweep_once(clock.now).claimed == 0  # the dead sweeper's leases hold
        clock.advance(41)
        report = sweeper.sweep_once(clock.now)
        assert report.claimed == 5
        rows = payments(ctx)
        truth = faults.truth()["payments"]
        for pid in ids:
            assert rows[pid].status == truth[rows[pid].gateway_payment_id or ""]["status"]
            assert rows[pid].lease_owner is None
    finally:
        sweeper.close()
        ctx.close()


def test_a_call_that_could_outlive_its_lease_is_not_made(
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    simulator: Simulator,
    clock: FakeClock,
) -> None:
    gid = simulator.create(amount=1000, currency="EUR", reference="late-in-queue")["id"]
    pid = register(client, merchant, gid)
    clock.advance(30)
    claimed_at = clock.now
    ticks = iter([claimed_at])  # the claim sees this time; every later read is 55 s on
    ctx.clock = lambda: next(ticks, claimed_at + timedelta(seconds=55))
    sweeper = Sweeper(ctx)
    try:
        report = sweeper.sweep_once()
    finally:
        sweeper.close()
    assert report.claimed == 1
    assert report.outcomes == {"simulator:lease_too_short": 1}
    assert fetches(simulator, [gid])[gid] == []
    row = payments(ctx)[pid]
    assert row.lease_owner is not None  # left to lapse; the next claim after expiry takes it
    assert row.next_poll_at == claimed_at
