"""Say out loud when a breaker opens or closes: an outage must be heard at WARNING."""

from __future__ import annotations

import logging

from reconciler.domain.breaker import CircuitBreaker

log = logging.getLogger("reconciler.breaker")


def opened(kind: str, target: str, breaker: CircuitBreaker) -> None:
    """Log a breaker that just opened (or re-opened on a failed probe), with the reason."""
    until = breaker.open_until.isoformat() if breaker.open_until is not None else None
    log.warning(
        "%s breaker for %s opened: %s",
        kind,
        target,
        breaker.last_failure or "calls keep failing",
        extra={
            "kind": kind,
            "target": target,
            "reason": breaker.last_failure,
            "failures": breaker.failures,
            "open_until": until,
        },
    )


def closed(kind: str, target: str) -> None:
    """Log a breaker that just closed: its target answers again."""
    log.warning(
        "%s breaker for %s closed: calls succeed again",
        kind,
        target,
        extra={"kind": kind, "target": target},
    )
