"""A per-gateway circuit breaker as a small state machine; the caller supplies the time."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from reconciler.domain.policy import Random


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    """Stop calling a gateway that keeps failing; let one probe decide when it is back.

    After `threshold` consecutive transient failures the breaker opens for `cooldown`
    seconds (doubling on each failed probe, up to `max_cooldown`). When the cool-down is
    over, exactly one caller gets `allow() == True` (the probe); its success closes the
    breaker and its failure opens it again. Thread-safe: the sweep polls from a pool.
    """

    threshold: int = 5
    cooldown: float = 30.0
    max_cooldown: float = 600.0
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    open_until: datetime | None = None
    current_cooldown: float = 0.0
    opened_count: int = 0
    last_failure: str | None = None  # what the last failed call said, for operators
    last_failure_at: datetime | None = None
    _probe_out: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def allow(self, now: datetime) -> bool:
        """Say whether a call may go out now (and claim the probe if one is due)."""
        with self._lock:
            if self.state is BreakerState.CLOSED:
                return True
            if self.state is BreakerState.OPEN:
                if self.open_until is not None and now < self.open_until:
                    return False
                self.state = BreakerState.HALF_OPEN
                self._probe_out = False
            if self._probe_out:
                return False
            self._probe_out = True
            return True

    def record_success(self) -> bool:
        """Close the breaker: the gateway answered. Say whether it was open (or probing)."""
        with self._lock:
            moved = self.state is not BreakerState.CLOSED
            self.state = BreakerState.CLOSED
            self.failures = 0
            self.current_cooldown = 0.0
            self.open_until = None
            self._probe_out = False
            return moved

    def record_failure(self, now: datetime, why: str | None = None) -> bool:
        """Count a transient failure; open the breaker at the threshold or on a failed probe.

        Say whether this failure opened it (each opening is told exactly once).
        """
        with self._lock:
            self.failures += 1
            self.last_failure, self.last_failure_at = why, now
            if self.state is BreakerState.HALF_OPEN:
                self._open(
                    now, min(self.max_cooldown, max(self.cooldown, self.current_cooldown * 2))
                )
                return True
            if self.state is BreakerState.CLOSED and self.failures >= self.threshold:
                self._open(now, self.cooldown)
                return True
            return False

    def trip(self, now: datetime, why: str | None = None) -> bool:
        """Open the breaker at once (a configuration error such as rejected credentials).

        Say whether it was not open already.
        """
        with self._lock:
            moved = self.state is not BreakerState.OPEN
            self.last_failure, self.last_failure_at = why, now
            self._open(now, max(self.cooldown, self.current_cooldown * 2))
            return moved

    def retry_at(self, now: datetime, rand: Random) -> datetime:
        """Pick when a payment held back by the open breaker should be tried again.

        Spread over [open_until, open_until + cooldown) so recovery is not one burst.
        """
        with self._lock:
            start = self.open_until if self.open_until and self.open_until > now else now
            spread = max(self.current_cooldown, self.cooldown)
        return start + timedelta(seconds=spread * rand())

    def _open(self, now: datetime, cooldown: float) -> None:
        self.state = BreakerState.OPEN
        self.current_cooldown = min(self.max_cooldown, cooldown)
        self.open_until = now + timedelta(seconds=self.current_cooldown)
        self._probe_out = False
        self.opened_count += 1
