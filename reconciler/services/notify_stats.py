"""Numbers about notifications for metrics: deliveries, attempts, backlog, endpoints, breakers."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.adapters import repository
from reconciler.domain.breaker import BreakerState
from reconciler.domain.delivery import DeliveryStatus
from reconciler.services.context import Context
from reconciler.services.sweep import Sweeper

ENDPOINT_STATES = ("enabled", "disabled", "failing")


@dataclass(frozen=True)
class NotifyStats:
    """What the notification tables say right now."""

    deliveries: dict[str, int]  # by status: pending, delivered, failed
    attempts: dict[str, int]  # attempts made by the deliveries in each status
    backlog: int  # pending deliveries whose attempt time has passed
    oldest_undelivered_age_s: float  # 0 when nothing is pending
    endpoints: dict[str, int]  # enabled, disabled, and enabled but failing


def notify_stats(ctx: Context) -> NotifyStats:
    """Read the notification numbers from the database (one read-only transaction)."""
    now = ctx.clock()
    with ctx.read() as session:
        counts = repository.delivery_counts(session)
        attempts = repository.delivery_attempts(session)
        backlog = repository.due_deliveries(session, now)
        oldest = repository.oldest_undelivered_created_at(session)
        endpoints = repository.endpoint_counts(session)
    statuses = [s.value for s in DeliveryStatus]
    return NotifyStats(
        deliveries={s: counts.get(s, 0) for s in statuses},
        attempts={s: attempts.get(s, 0) for s in statuses},
        backlog=backlog,
        oldest_undelivered_age_s=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        endpoints={s: endpoints.get(s, 0) for s in ENDPOINT_STATES},
    )


def endpoint_breakers(sweeper: Sweeper | None) -> dict[str, BreakerState]:
    """Each endpoint's breaker state in this process (endpoints it has attempted)."""
    if sweeper is None:
        return {}
    kind = sweeper.deliveries.name
    return {
        target: breaker.state
        for (name, target), breaker in list(sweeper.engine.breakers.items())
        if name == kind
    }
