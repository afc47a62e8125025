"""Prometheus families for notifications: attempt outcomes, deliveries, backlog, breakers."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from reconciler.bootstrap import Context
from reconciler.domain.breaker import BreakerState
from reconciler.services.notify_stats import endpoint_breakers, notify_stats
from reconciler.services.sweep import Sweeper, SweepReport

SweeperRef = Callable[[], Sweeper | None]


def register(
    registry: CollectorRegistry, ctx: Context, sweeper: SweeperRef
) -> Callable[[SweepReport], None]:
    """Add the notification metrics to `registry`; return what counts a sweep's attempts."""
    attempts = Counter(
        "reconciler_notify_attempts",
        "Delivery attempts made by this process, by outcome "
        "(2xx, 3xx, 4xx, 5xx, error; held and lease_too_short made no request)",
        ["outcome"],
        registry=registry,
    )
    registry.register(NotifyCollector(ctx, sweeper))

    def observe(report: SweepReport) -> None:
        for outcome, count in report.deliveries.items():
            attempts.labels(outcome=outcome).inc(count)

    return observe


class NotifyCollector(Collector):
    """Gauges read from the notification tables and this process's breakers at scrape time."""

    def __init__(self, ctx: Context, sweeper: SweeperRef) -> None:
        self.ctx = ctx
        self.sweeper = sweeper

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = notify_stats(self.ctx)
        deliveries = GaugeMetricFamily(
            "reconciler_notify_deliveries", "Deliveries by status", labels=["status"]
        )
        for status, count in stats.deliveries.items():
            deliveries.add_metric([status], count)
        yield deliveries
        attempts = GaugeMetricFamily(
            "reconciler_notify_delivery_attempts",
            "Attempts taken by the deliveries still stored, by their status",
            labels=["status"],
        )
        for status, count in stats.attempts.items():
            attempts.add_metric([status], count)
        yield attempts
        yield GaugeMetricFamily(
            "reconciler_notify_backlog",
            "Pending deliveries whose attempt time has passed",
            value=stats.backlog,
        )
        yield GaugeMetricFamily(
            "reconciler_notify_oldest_undelivered_age_seconds",
            "Age of the oldest pending delivery (0 when none)",
            value=stats.oldest_undelivered_age_s,
        )
        endpoints = GaugeMetricFamily(
            "reconciler_notify_endpoints",
            "Endpoints by state (failing: enabled, every attempt failing since failing_since)",
            labels=["state"],
        )
        for state, count in stats.endpoints.items():
            endpoints.add_metric([state], count)
        yield endpoints
        # One series per state, not per endpoint: endpoints come and go by the thousand, and
        # a label per endpoint would grow the scrape without bound. Operators find which
        # endpoints with the page or GET /admin/webhook_endpoints?status=failing.
        breakers = GaugeMetricFamily(
            "reconciler_notify_endpoint_breakers",
            "Endpoints by the state of their circuit breaker in this process "
            "(endpoints it has attempted)",
            labels=["state"],
        )
        states = Tally(endpoint_breakers(self.sweeper()).values())
        for state in BreakerState:
            breakers.add_metric([state.value], states[state])
        yield breakers
