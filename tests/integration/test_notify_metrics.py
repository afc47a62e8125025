"""Notification metrics read from real tables after real deliveries."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from support.app import make_settings
from support.clock import FakeClock
from support.receiver import run_receiver
from support.shop import Shop
from support.simulator import Simulator

from reconciler.bootstrap import Context, bootstrap
from reconciler.entrypoints import notify_metrics
from reconciler.services.sweep import Sweeper


@pytest.fixture
def metrics_ctx(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[Context]:
    settings = make_settings(
        db_url,
        simulator.url,
        notify_allow_private=1,
        breaker_threshold=2,
        notify_max_in_flight_per_merchant=16,  # one sweep attempts every delivery
    )
    context = bootstrap(settings, clock=clock, rand=random.Random(4).random)
    yield context
    context.close()


def test_metrics_show_outcomes_backlog_oldest_undelivered_endpoints_and_breakers(
    metrics_ctx: Context, simulator: Simulator, clock: FakeClock
) -> None:
    shop = Shop(metrics_ctx, simulator)
    sweeper = Sweeper(metrics_ctx)
    registry = CollectorRegistry()
    observe = notify_metrics.register(registry, metrics_ctx, lambda: sweeper)
    sweeper.observer = observe
    try:
        with run_receiver() as good, run_receiver() as bad, run_receiver() as gone:
            bad.status, gone.status = 503, 410
            shop.endpoint(good.url)
            down = shop.endpoint(bad.url)
            shop.endpoint(gone.url, events=["payment.succeeded"])  # one delivery
            for n, status in enumerate(["succeeded", "failed"]):
                _, gid = shop.payment(f"m{n}")
                shop.report(gid, status)
            sweeper.sweep_once(clock.now)
            clock.advance(600)
            sweeper.sweep_once(clock.now)  # the bad endpoint's retries open its breaker

            def value(name: str, **labels: str) -> float | None:
                return registry.get_sample_value(name, labels)

            # 503 twice opens the bad endpoint's breaker (threshold 2); ten minutes on, one
            # probe goes out and fails, the other delivery is held without a request.
            want = {
                ("reconciler_notify_attempts_total", "outcome", "2xx"): 2,
                ("reconciler_notify_attempts_total", "outcome", "4xx"): 1,
                ("reconciler_notify_attempts_total", "outcome", "5xx"): 3,
                ("reconciler_notify_attempts_total", "outcome", "held"): 1,
                ("reconciler_notify_deliveries", "status", "delivered"): 2,
                ("reconciler_notify_deliveries", "status", "failed"): 1,
                ("reconciler_notify_deliveries", "status", "pending"): 2,
                ("reconciler_notify_delivery_attempts", "status", "pending"): 3,
                ("reconciler_notify_endpoints", "state", "enabled"): 2,
                ("reconciler_notify_endpoints", "state", "disabled"): 1,
                ("reconciler_notify_endpoints", "state", "failing"): 1,
                ("reconciler_notify_endpoint_breakers", "state", "open"): 1,
                ("reconciler_notify_endpoint_breakers", "state", "closed"): 2,
            }
            got = {(name, label, v): value(name, **{label: v}) for name, label, v in want}
            assert got == want
            # No series names an endpoint: their number does not grow with the endpoints.
            exposed = [s for family in registry.collect() for s in family.samples]
            assert not any("endpoint_id" in s.labels for s in exposed)
            assert value("reconciler_notify_oldest_undelivered_age_seconds") == 600
            assert value("reconciler_notify_backlog") == 0  # the open breaker holds them
            clock.advance(36000)
            assert value("reconciler_notify_backlog") == 2
            # A deleted endpoint's breaker is forgotten, here and in the metrics.
            shop.client.delete(f"/v1/webhook_endpoints/{down.id}", headers=shop.merchant.headers)
            sweeper.prune_breakers()
            assert (sweeper.deliveries.name, down.id) not in sweeper.engine.breakers
            assert value("reconciler_notify_endpoint_breakers", state="open") == 0
    finally:
        sweeper.close()
