"""What the banner on every operator page says: open breakers and failing deliveries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.adapters import repository
from reconciler.domain.breaker import BreakerState, CircuitBreaker
from reconciler.services.context import Context


@dataclass(frozen=True)
class Alert:
    """One line of the banner; `page` names the operator page that shows more."""

    text: str
    page: str  # "overview" or "endpoints"


def alerts(
    ctx: Context,
    gateway_breakers: Mapping[str, CircuitBreaker],
    endpoint_breakers: Mapping[str, BreakerState] | None,
) -> list[Alert]:
    """List what is wrong right now: each gateway breaker not closed, failing endpoints."""
    found = []
    for gateway, breaker in sorted(gateway_breakers.items()):
        if breaker.state is BreakerState.CLOSED:
            continue
        why = f": {breaker.last_failure}" if breaker.last_failure else ""
        found.append(
            Alert(
                f"The {gateway} gateway's breaker is {breaker.state.value.replace('_', '-')}"
                f"{why}. Its polls are held back until a probe succeeds.",
                "overview",
            )
        )
    with ctx.read() as session:
        failing = repository.endpoint_counts(session).get("failing", 0)
    open_endpoints = sum(
        1 for state in (endpoint_breakers or {}).values() if state is not BreakerState.CLOSED
    )
    if failing or open_endpoints:
        parts = []
        if failing:
            parts.append(f"{failing} {'endpoint is' if failing == 1 else 'endpoints are'} failing")
        if open_endpoints:
            plural = "breaker is" if open_endpoints == 1 else "breakers are"
            parts.append(f"{open_endpoints} endpoint {plural} open")
        found.append(
            Alert(f"Deliveries to merchants are failing: {', '.join(parts)}.", "endpoints")
        )
    return found
