"""The delivery schedule and the delivery decision: pure functions from a row and an outcome.

A merchant's endpoint is one more third-party API that answers slowly, fails and goes
down. Each delivery row keeps its own schedule; `decide_delivery` turns one attempt's
outcome into the row's next state and the engine stores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from reconciler.domain.backoff import Random, grow, jittered, parse_retry_after

ERROR_TEXT_LIMIT = 500


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class DeliveryPolicy:
    """Retry parameters for merchant deliveries, in seconds.

    Defaults: the first attempt at once, then 5 s doubling (factor 2) up to 10 h between
    attempts, giving up after 3 days.
    """

    first_delay: float = 0.0
    base_delay: float = 5.0
    factor: float = 2.0
    max_delay: float = 36000.0
    give_up_after: float = 259200.0

    def __post_init__(self) -> None:
        if min(self.first_delay, self.base_delay, self.max_delay, self.give_up_after) < 0:
            raise ValueError("delivery delays must not be negative")
        if self.factor < 1:
            raise ValueError("delivery factor must be at least 1")
        if self.base_delay <= 0 or self.max_delay <= 0:
            raise ValueError("base and max delay must be positive")


@dataclass(frozen=True)
class AttemptDecision:
    """When to attempt next; `at` is None when the schedule gives up."""

    at: datetime | None
    delay: float  # the undithered delay, kept on the row as the next call's previous delay

    @property
    def gives_up(self) -> bool:
        return self.at is None


def first_attempt_at(policy: DeliveryPolicy, created_at: datetime) -> datetime:
    """Schedule a new delivery's first attempt (at once, by default)."""
    return created_at + timedelta(seconds=policy.first_delay)


def give_up_deadline(policy: DeliveryPolicy, start: datetime) -> datetime:
    """Say when a delivery started (or revived) at `start` stops being attempted."""
    return start + timedelta(seconds=policy.give_up_after)


def next_attempt(
    policy: DeliveryPolicy,
    *,
    attempts: int,
    previous_delay: float | None,
    now: datetime,
    give_up_at: datetime,
    retry_after: float | None = None,
    rand: Random,
) -> AttemptDecision:
    """Decide when to attempt again after `attempts` failed attempts.

    The undithered delay is `min(max_delay, max(base, previous * factor))`. Jitter keeps
    a uniform share in [0.5, 1) of it, so deliveries that failed together (an endpoint's
    outage) come back spread out, never faster than half the schedule. `Retry-After`
    is a floor that jitter never shortens, capped at `max_delay` so an endpoint cannot
    park its deliveries past the ordinary longest gap. No attempt is scheduled after
    `give_up_at`: the last one happens at the deadline, and a failure at or after it
    gives up.
    """
    if now >= give_up_at:
        return AttemptDecision(at=None, delay=previous_delay or 0.0)
    if attempts <= 0:
        at = now + timedelta(seconds=policy.first_delay)
        return AttemptDecision(at=min(at, give_up_at), delay=policy.first_delay)
    delay = grow(
        base=policy.base_delay,
        factor=policy.factor,
        max_delay=policy.max_delay,
        previous=previous_delay,
    )
    floor = min(retry_after or 0.0, policy.max_delay)
    wait = max(jittered(delay, rand), floor)
    return AttemptDecision(at=min(now + timedelta(seconds=wait), give_up_at), delay=delay)


@dataclass(frozen=True)
class DeliveryRow:
    """The fields of a delivery row that its next state depends on."""

    attempts: int
    last_delay_s: float | None
    give_up_at: datetime


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one POST to the endpoint gave: an HTTP status, or an error before any answer."""

    status_code: int | None = None
    retry_after: str | None = None  # the raw header; read against `now` by the decision
    location: str | None = None  # a redirect's target, reported, never followed
    error: str | None = None  # a timeout, a refused connection, a refused destination
    duration_s: float = 0.0


@dataclass(frozen=True)
class DeliveryUpdate:
    """The row's next state after one attempt; the engine stores it and clears the lease."""

    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime
    last_response_status: int | None
    last_error: str | None
    last_delay_s: float | None
    delivered_at: datetime | None = None
    disable_endpoint: str | None = None  # a reason, when the endpoint must be disabled


def describe_failure(outcome: DeliveryOutcome) -> str | None:
    """Say why an attempt failed, or None when it succeeded (any 2xx)."""
    code = outcome.status_code
    if code is None:
        return (outcome.error or "no answer")[:ERROR_TEXT_LIMIT]
    if 200 <= code < 300:
        return None
    if 300 <= code < 400:
        target = f" to {outcome.location}" if outcome.location else ""
        return f"HTTP {code}: redirect{target} not followed"[:ERROR_TEXT_LIMIT]
    return f"HTTP {code}"


def decide_delivery(
    row: DeliveryRow,
    outcome: DeliveryOutcome,
    *,
    now: datetime,
    policy: DeliveryPolicy,
    rand: Random,
) -> DeliveryUpdate:
    """Turn one attempt's outcome into the delivery's next state.

    2xx is delivered. 410 Gone fails the delivery and disables the endpoint (the
    merchant said it is gone for good). Anything else, a redirect, a timeout or a refused
    destination included, is a failed attempt retried on the schedule, with a 429/503's
    `Retry-After` as a floor, until the deadline turns it into `failed`.
    """
    attempts = row.attempts + 1
    error = describe_failure(outcome)
    if error is None:
        return DeliveryUpdate(
            status=DeliveryStatus.DELIVERED,
            attempts=attempts,
            next_attempt_at=None,
            last_attempt_at=now,
            last_response_status=outcome.status_code,
            last_error=None,
            last_delay_s=row.last_delay_s,
            delivered_at=now,
        )
    if outcome.status_code == 410:
        return DeliveryUpdate(
            status=DeliveryStatus.FAILED,
            attempts=attempts,
            next_attempt_at=None,
            last_attempt_at=now,
            last_response_status=410,
            last_error=error,
            last_delay_s=row.last_delay_s,
            disable_endpoint="the endpoint answered 410 Gone",
        )
    retry_after = None
    if outcome.status_code in (429, 503):
        retry_after = parse_retry_after(outcome.retry_after, now)
    decision = next_attempt(
        policy,
        attempts=attempts,
        previous_delay=row.last_delay_s,
        now=now,
        give_up_at=row.give_up_at,
        retry_after=retry_after,
        rand=rand,
    )
    return DeliveryUpdate(
        status=DeliveryStatus.FAILED if decision.gives_up else DeliveryStatus.PENDING,
        attempts=attempts,
        next_attempt_at=decision.at,
        last_attempt_at=now,
        last_response_status=outcome.status_code,
        last_error=error,
        last_delay_s=decision.delay,
    )
