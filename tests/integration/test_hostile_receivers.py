"""Receivers no merchant should have, against the service's own sweep on both databases.

One merchant points its endpoints at receivers that drip headers, drip a body, hang after
their headers, stream a chunked body that never ends, and at a host name whose DNS never
answers. Another merchant's healthy endpoint (verifying with `standardwebhooks`) must keep
getting its deliveries meanwhile; no webhook-id may be in flight twice at once; every
hostile attempt must end (the receivers would go on for ever), be recorded with its
error, and go on the backoff; and nothing may crash with a traceback.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from support.app import make_settings
from support.clock import FakeClock
from support.hostile import MODES, Hostile, run_hostile
from support.receiver import Answer, Received, run_receiver
from support.shop import Shop, deliver_all, eventually, verified
from support.simulator import Simulator

from reconciler.bootstrap import Context, bootstrap
from reconciler.entrypoints.scheduler import SweepJob
from reconciler.services.sweep import Sweeper

TIMEOUT_S = 1.0
CAP_PER_MERCHANT = 3


class SlowDns:
    """A resolver whose one name never answers until the test ends (the rest: loopback)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.asked = 0

    def __call__(self, host: str, port: int) -> list[str]:
        if host == "slow-dns.test":
            self.asked += 1
            self.release.wait(60)
        return ["127.0.0.1"]


@pytest.fixture
def slow_dns() -> Iterator[SlowDns]:
    resolver = SlowDns()
    yield resolver
    resolver.release.set()


@pytest.fixture
def live_ctx(db_url: str, simulator: Simulator, slow_dns: SlowDns) -> Iterator[Context]:
    settings = make_settings(
        db_url,
        simulator.url,
        notify_allow_private=1,
        notify_timeout_s=TIMEOUT_S,
        notify_base_delay_s=0.5,
        notify_concurrency=8,
        notify_max_in_flight_per_endpoint=2,
        notify_max_in_flight_per_merchant=CAP_PER_MERCHANT,
        lease_s=10,
        breaker_threshold=1000,  # every hostile attempt is made, none held by a breaker
    )
    context = bootstrap(settings, rand=random.Random(5).random, resolver=slow_dns)
    yield context
    context.close()


def test_hostile_endpoints_of_one_merchant_cannot_stall_another_merchants_deliveries(
    live_ctx: Context,
    simulator: Simulator,
    slow_dns: SlowDns,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    mallory, acme = Shop(live_ctx, simulator, "mallory"), Shop(live_ctx, simulator, "acme")
    with ExitStack() as stack:
        hostiles = [stack.enter_context(run_hostile(mode, interval_s=0.1)) for mode in MODES]
        healthy = stack.enter_context(run_receiver())
        for hostile in hostiles:
            mallory.endpoint(hostile.url)
        # Registration does not wait for a name that never resolves: it is checked at
        # delivery time, where every connection is checked anyway.
        slow_endpoint = mallory.endpoint("https://slow-dns.test:9/hook")
        acme_endpoint = acme.endpoint(healthy.url)
        for n in range(6):
            _, gid = mallory.payment(f"m{n}")
            mallory.report(gid, "succeeded")

        sweeper = Sweeper(live_ctx)
        stop = threading.Event()
        in_flight = _watch_in_flight(hostiles, stop)

        def job() -> None:  # what the scheduler does: tick, and never wait for the calls
            while not stop.is_set():
                sweeper.tick()
                time.sleep(0.02)

        ticking = threading.Thread(target=job)
        ticking.start()
        try:
            eventually(lambda: len(hostiles[0].finished()) >= 2, "hostile attempts under way")
            for n in range(6):  # acme's payments change while mallory's attempts hang
                _, gid = acme.payment(f"a{n}")
                acme.report(gid, "succeeded")
            eventually(
                lambda: (
                    {d["status"] for d in acme.deliveries(acme_endpoint)} == {"delivered"}
                    and len(acme.deliveries(acme_endpoint)) == 6
                ),
                "every delivery to acme's healthy endpoint",
                timeout=60,
            )

            def every_hostile_delivery_attempted() -> bool:
                listed = [d for e in mallory_endpoints(mallory) for d in listing(mallory, e)]
                return len(listed) == 30 and all(d["attempts"] >= 1 for d in listed)

            eventually(every_hostile_delivery_attempted, "an attempt at every hostile delivery", 90)
        finally:
            stop.set()
            ticking.join()
            sweeper.close()
            slow_dns.release.set()

    # acme: each event once, first attempt, verified with its secret.
    assert len(healthy.received) == 6
    assert {d["attempts"] for d in acme.deliveries(acme_endpoint)} == {1}
    for request in healthy.received:
        verified(request, acme_endpoint.secret)
    # mallory: never more in flight than its cap, whatever its five endpoints did.
    assert max(in_flight) <= CAP_PER_MERCHANT
    for hostile in hostiles:
        assert hostile.connections, hostile.mode
        assert hostile.overlapping() == [], hostile.mode  # one copy in flight at most
        # The receivers drip for ever: every connection was closed by the sender.
        assert all(c.closed is not None for c in hostile.connections), hostile.mode
    for endpoint_id in mallory_endpoints(mallory):
        resource = mallory.get(f"/v1/webhook_endpoints/{endpoint_id}")
        assert resource["last_error"] == "timeout", resource  # shown on the endpoint
        for delivery in listing(mallory, endpoint_id):
            assert delivery["status"] == "pending"
            assert delivery["last_error"] == "timeout"
            next_at = datetime.fromisoformat(delivery["next_attempt_at"])
            assert next_at > datetime.fromisoformat(delivery["last_attempt_at"])  # backed off
    assert slow_endpoint.id in mallory_endpoints(mallory)
    assert slow_dns.asked >= 1
    # No traceback, no crash: every failure was an attempt with a few words.
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert not any("crashed" in r.getMessage() for r in caplog.records)


def mallory_endpoints(shop: Shop) -> list[str]:
    return [e["id"] for e in shop.get("/v1/webhook_endpoints")["data"]]


def _watch_in_flight(hostiles: list[Hostile], stop: threading.Event) -> list[int]:
    """Sample how many connections mallory's receivers hold open at once."""
    seen = [0]

    def sample() -> None:
        while not stop.is_set():
            open_now = 0
            for hostile in hostiles:
                with hostile.lock:
                    open_now += sum(1 for c in hostile.connections if c.closed is None)
            seen.append(open_now)
            time.sleep(0.005)

    threading.Thread(target=sample, daemon=True).start()
    return seen


def listing(shop: Shop, endpoint_id: str) -> list[dict[str, Any]]:
    return list(shop.get(f"/v1/webhook_endpoints/{endpoint_id}/deliveries?limit=100")["data"])


def test_a_flaky_endpoint_gets_every_event_on_its_backoff(
    db_url: str, simulator: Simulator, clock: FakeClock
) -> None:
    # 30 % of answers are 503s and 10 % come after the deadline; each attempt draws anew.
    settings = make_settings(
        db_url,
        simulator.url,
        notify_allow_private=1,
        notify_timeout_s=0.3,
        notify_base_delay_s=1,
        lease_s=10,
        breaker_threshold=1000,
    )
    ctx = bootstrap(settings, clock=clock, rand=random.Random(11).random)
    draws = random.Random(7)
    late = threading.Event()  # never set: a late answer comes after the sender hung up
    try:
        shop = Shop(ctx, simulator)
        with run_receiver() as flaky:

            def answer(request: Received) -> Answer:
                draw = draws.random()
                if draw < 0.1:
                    late.wait(0.6)
                return (503, {}) if 0.1 <= draw < 0.4 else (200, {})

            flaky.script = answer
            endpoint = shop.endpoint(flaky.url)
            for n in range(12):
                _, gid = shop.payment(f"f{n}")
                shop.report(gid, "succeeded")
            sweeper = Sweeper(ctx)
            try:
                deliver_all(sweeper, ctx, clock)
            finally:
                sweeper.close()
            listed = shop.deliveries(endpoint)
            assert [d["status"] for d in listed] == ["delivered"] * 12
            # Every failed attempt was retried: as many requests as attempts, more than 12.
            assert sum(d["attempts"] for d in listed) == len(flaky.received) > 12
            for request in flaky.received:
                verified(request, endpoint.secret)
    finally:
        ctx.close()


def test_a_merchant_at_its_cap_does_not_make_the_sweep_spin(
    db_url: str, simulator: Simulator, tmp_path: Path
) -> None:
    settings = make_settings(
        db_url,
        simulator.url,
        notify_allow_private=1,
        notify_timeout_s=3,
        notify_max_in_flight_per_merchant=2,
        lease_s=10,
        breaker_threshold=1000,
        sweep_interval_s=1,
    )
    ctx = bootstrap(settings, rand=random.Random(1).random)
    try:
        shop = Shop(ctx, simulator, "mallory")
        with run_hostile("drip_body", interval_s=0.2) as hostile:
            shop.endpoint(hostile.url)
            for n in range(6):  # six due, two may be in flight: four wait for the cap
                _, gid = shop.payment(f"m{n}")
                shop.report(gid, "succeeded")
            sweeper = Sweeper(ctx)
            ticks = Counter[str]()
            tick = sweeper.engine.tick

            def counted(*args: Any, **kwargs: Any) -> Any:
                ticks["tick"] += 1
                return tick(*args, **kwargs)

            sweeper.engine.tick = counted  # type: ignore[method-assign]
            job = SweepJob(sweeper, 1, lock_name=str(tmp_path))
            job.start()
            try:
                job.wake(ctx.clock())
                eventually(lambda: len(hostile.connections) == 2, "two attempts in flight")
                time.sleep(1.5)  # a window in which a spinning sweep ticks hundreds of times
            finally:
                job.stop()
        # Woken by the interval and by announcements, not by due rows it may not claim.
        assert ticks["tick"] < 30, ticks
    finally:
        ctx.close()
