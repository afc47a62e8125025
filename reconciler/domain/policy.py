"""The polling schedule: one pure function from a payment's poll history to its next poll.

The curve itself (growth, jitter, `Retry-After`) is `domain.backoff`, shared with deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler.domain.backoff import (
    MAX_RETRY_AFTER,
    Random,
    grow,
    honouring,
    jittered,
    parse_retry_after,
)


@dataclass(frozen=True)
class PollPolicy:
    """Backoff parameters for one gateway, in seconds."""

    first_delay: float = 30.0
    base_delay: float = 30.0
    factor: float = 2.0
    max_delay: float = 3600.0
    give_up_after: float = 259200.0
    # A failed call retries after this, doubling, up to the delay in force (0: it waits
    # for the next step of the schedule instead). See `domain.sync`.
    retry_first: float = 1.0

    def __post_init__(self) -> None:
        delays = (self.first_delay, self.base_delay, self.max_delay, self.give_up_after)
        if min(*delays, self.retry_first) < 0:
            raise ValueError("poll delays must not be negative")
        if self.factor < 1:
            raise ValueError("poll factor must be at least 1")
        if self.base_delay <= 0 or self.max_delay <= 0:
            raise ValueError("base and max delay must be positive")


@dataclass(frozen=True)
class PollDecision:
    """When to poll next; `at` is None when the schedule gives up."""

    at: datetime | None
    delay: float  # the undithered delay, kept on the row as the next call's previous delay

    @property
    def gives_up(self) -> bool:
        return self.at is None


def first_poll_at(policy: PollPolicy, created_at: datetime) -> datetime:
    """Schedule the first poll after the grace period a webhook gets to arrive first."""
    return created_at + timedelta(seconds=policy.first_delay)


def give_up_deadline(policy: PollPolicy, start: datetime) -> datetime:
    """Say when a schedule started at `start` stops polling without a terminal status."""
    return start + timedelta(seconds=policy.give_up_after)


def next_poll(
    policy: PollPolicy,
    *,
    attempt: int,
    previous_delay: float | None,
    now: datetime,
    give_up_at: datetime,
    retry_after: float | None = None,
    rand: Random,
) -> PollDecision:
    """Decide when to poll again after `attempt` polls (failed ones included) have been made.

    The undithered delay grows geometrically: `min(max_delay, max(base, previous * factor))`,
    which is `min(max_delay, base * factor**(attempt - 1))` when nothing else intervened.
    Jitter multiplies it by a uniform factor in [0.5, 1): a fleet of payments that failed
    together (an outage) spreads out instead of returning as one burst, and the
    guaranteed half keeps the schedule from collapsing. The gateway's `Retry-After` is a
    floor, never shortened by jitter (but capped at `MAX_RETRY_AFTER`).

    Once `now` is past `give_up_at` (`created_at + give_up_after` unless someone revived
    the payment) the schedule gives up. Since each
    delay is at least half its undithered value, the number of polls is bounded by
    `1 + k`, where k is the smallest integer with
    `sum(0.5 * min(max_delay, base * factor**n) for n in range(k)) >= give_up_after - first_delay`
    (see `max_polls`).
    """
    if now >= give_up_at:
        return PollDecision(at=None, delay=previous_delay or 0.0)
    if attempt <= 0:
        delay = policy.first_delay
        return PollDecision(at=now + timedelta(seconds=honouring(delay, retry_after)), delay=delay)
    delay = grow(
        base=policy.base_delay,
        factor=policy.factor,
        max_delay=policy.max_delay,
        previous=previous_delay,
    )
    wait = honouring(jittered(delay, rand), retry_after)
    return PollDecision(at=now + timedelta(seconds=wait), delay=delay)


def max_polls(policy: PollPolicy) -> int:
    """Return the most polls the schedule can make before giving up (see `next_poll`)."""
    budget = policy.give_up_after - policy.first_delay
    spent, k = 0.0, 0
    while spent < budget:
        spent += 0.5 * min(policy.max_delay, policy.base_delay * policy.factor**k)
        k += 1
    return 1 + k


__all__ = [
    "MAX_RETRY_AFTER",
    "PollDecision",
    "PollPolicy",
    "Random",
    "first_poll_at",
    "give_up_deadline",
    "grow",
    "jittered",
    "max_polls",
    "next_poll",
    "parse_retry_after",
]
