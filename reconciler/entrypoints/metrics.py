"""Prometheus metrics: counters fed by the edges and the sweep, gauges read from the table."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from reconciler.adapters import repository
from reconciler.bootstrap import Context
from reconciler.domain.breaker import BreakerState
from reconciler.domain.status import SyncState
from reconciler.services.sweep import Sweeper, SweepReport

SKIPPED = ("held", "lease_too_short")  # sweep outcomes that made no gateway call
BREAKER_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class Metrics:
    """One registry per app (nothing global, so tests and processes stay apart)."""

    def __init__(self, ctx: Context) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.polls = Counter(
            "reconciler_polls",
            "Gateway calls made by the sweep, by outcome (ok, transient, not_found, ...)",
            ["gateway", "outcome"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "reconciler_webhooks",
            "Webhook deliveries received, by result",
            ["gateway", "result"],
            registry=self.registry,
        )
        self.skipped = Counter(
            "reconciler_polls_skipped",
            "Claimed payments the sweep did not call: held (breaker open), lease_too_short",
            ["gateway", "reason"],
            registry=self.registry,
        )
        self.sweep_duration = Histogram(
            "reconciler_sweep_duration_seconds",
            "Wall time of one sweep",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.sweep_claimed = Counter(
            "reconciler_sweep_claimed", "Payments claimed by sweeps", registry=self.registry
        )
        self.breaker_state = Gauge(
            "reconciler_breaker_state",
            "Circuit breaker per gateway: 0 closed, 1 half-open, 2 open",
            ["gateway"],
            registry=self.registry,
        )
        self.registry.register(TableCollector(ctx))
        self.sweeper: Sweeper | None = None

    def webhook(self, gateway: str, result: str) -> None:
        self.webhooks.labels(gateway=gateway[:32], result=result).inc()

    def observe_sweep(self, report: SweepReport) -> None:
        self.sweep_duration.observe(report.duration_s)
        self.sweep_claimed.inc(report.claimed)
        for key, count in report.outcomes.items():
            gateway, _, outcome = key.partition(":")
            if outcome in SKIPPED:
                self.skipped.labels(gateway=gateway, reason=outcome).inc(count)
            else:
                self.polls.labels(gateway=gateway, outcome=outcome).inc(count)
        self.update_breakers()

    def update_breakers(self) -> None:
        if self.sweeper is None:
            return
        for name, breaker in self.sweeper.breakers.items():
            self.breaker_state.labels(gateway=name).set(BREAKER_VALUE[breaker.state])


class TableCollector(Collector):
    """Gauges computed from the payments table at scrape time."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.ctx.clock()
        with self.ctx.read() as session:
            states = repository.count_by_sync_state(session)
            backlog = repository.due_backlog(session, now)
            oldest = repository.oldest_pending_created_at(session)
        by_state = GaugeMetricFamily(
            "reconciler_payments", "Payments by sync state", labels=["sync_state"]
        )
        for state in SyncState:
            by_state.add_metric([state.value], states.get(state.value, 0))
        yield by_state
        yield GaugeMetricFamily(
            "reconciler_due_backlog", "Payments whose next poll time has passed", value=backlog
        )
        yield GaugeMetricFamily(
            "reconciler_oldest_pending_age_seconds",
            "Age of the oldest payment still pending (0 when none)",
            value=(now - oldest).total_seconds() if oldest else 0.0,
        )
