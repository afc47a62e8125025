"""Prometheus metrics: counters fed by the edges and the sweep, gauges read from the table.

Gateway call latency is observed by `observe_gateway_call(gateway, operation, outcome,
seconds)`; until the sweep calls it itself, `instrument` wraps each gateway in a
`TimedGateway` that does (polls and creates alike).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TypeVar

from flask import Flask, Response, g, request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from reconciler.adapters.gateways.base import (
    AuthError,
    CreateRequest,
    Gateway,
    GatewayPayment,
    Headers,
    NotFoundError,
    RequestRejected,
    TransientError,
    WebhookEvent,
)
from reconciler.bootstrap import Context
from reconciler.domain.breaker import BreakerState
from reconciler.domain.status import SyncState
from reconciler.entrypoints import notify_metrics
from reconciler.entrypoints.reliability_metrics import ReliabilityCollector
from reconciler.services import health
from reconciler.services.sweep import Sweeper, SweepReport

# A `_created` gauge beside every counter and histogram doubles the series for nothing
# Prometheus uses (it is process-global in prometheus_client, hence here at import).
disable_created_metrics()  # type: ignore[no-untyped-call]

SKIPPED = ("held", "lease_too_short")  # sweep outcomes that made no gateway call
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
T = TypeVar("T")


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
            "Circuit breaker per gateway: 1 for its current state, 0 for the others",
            ["gateway", "state"],
            registry=self.registry,
        )
        self.gateway_calls = Histogram(
            "reconciler_gateway_call_duration_seconds",
            "Gateway API calls (fetch, create) by outcome, with their wall time",
            ["gateway", "operation", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.http_requests = Histogram(
            "reconciler_http_request_duration_seconds",
            "HTTP requests served, by method, route template and status, with their wall time",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(TableCollector(ctx))
        self.registry.register(ReliabilityCollector(ctx))
        self.sweeper: Sweeper | None = None
        self.observe_notifications = notify_metrics.register(
            self.registry, ctx, lambda: self.sweeper
        )

    def webhook(self, gateway: str, result: str) -> None:
        self.webhooks.labels(gateway=gateway[:32], result=result).inc()

    def observe_sweep(self, report: SweepReport) -> None:
        self.observe_notifications(report)
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
            for state in BreakerState:
                current = 1 if breaker.state is state else 0
                self.breaker_state.labels(gateway=name, state=state.value).set(current)

    def observe_gateway_call(
        self, gateway: str, operation: str, outcome: str, seconds: float
    ) -> None:
        """Record one gateway call: `operation` fetch or create, `outcome` as in call_outcome."""
        self.gateway_calls.labels(gateway=gateway, operation=operation, outcome=outcome).observe(
            seconds
        )

    def instrument(self, gateways: dict[str, Gateway]) -> None:
        """Time every call of these gateways (replaces each with a `TimedGateway`, in place)."""
        for name, gateway in gateways.items():
            if not isinstance(gateway, TimedGateway):
                gateways[name] = TimedGateway(gateway, self.observe_gateway_call)

    def install(self, app: Flask) -> None:
        """Count and time every request the app serves, by its route template."""

        @app.before_request
        def _start() -> None:
            g.reconciler_started = time.perf_counter()

        @app.after_request
        def _observe(response: Response) -> Response:
            started = g.get("reconciler_started")
            if started is not None:
                # The template, never the path: ids in paths would make a series per payment.
                rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
                method = request.method if request.method in METHODS else "other"
                self.http_requests.labels(
                    method=method, route=rule, status=str(response.status_code)
                ).observe(time.perf_counter() - started)
            return response


def call_outcome(exc: BaseException | None) -> str:
    """Name a gateway call's outcome: ok, transient, not_found, auth_error, rejected, error."""
    if exc is None:
        return "ok"
    for kind, name in (
        (TransientError, "transient"),
        (NotFoundError, "not_found"),
        (AuthError, "auth_error"),
        (RequestRejected, "rejected"),
    ):
        if isinstance(exc, kind):
            return name
    return "error"


Observe = Callable[[str, str, str, float], None]


class TimedGateway:
    """A gateway whose fetch and create calls are timed and reported to an observer."""

    def __init__(self, inner: Gateway, observe: Observe) -> None:
        self.inner = inner
        self.name = inner.name
        self._observe = observe

    def fetch_payment(self, gateway_payment_id: str) -> GatewayPayment:
        return self._timed("fetch", lambda: self.inner.fetch_payment(gateway_payment_id))

    def create_payment(self, request: CreateRequest) -> GatewayPayment:
        return self._timed("create", lambda: self.inner.create_payment(request))

    def parse_webhook(self, headers: Headers, body: bytes, now: datetime) -> WebhookEvent:
        return self.inner.parse_webhook(headers, body, now)

    def _timed(self, operation: str, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            return call()
        except BaseException as exc:
            failure = exc
            raise
        finally:
            elapsed = time.perf_counter() - started
            self._observe(self.name, operation, call_outcome(failure), elapsed)


class TableCollector(Collector):
    """Gauges computed from the payments table at scrape time."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.ctx.clock()
        stats = health.table_stats(self.ctx, now)
        states, backlog, oldest = stats.by_sync_state, stats.due, stats.oldest_pending_created_at
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
