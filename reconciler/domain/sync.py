"""The sync decision: what a payment's polling schedule becomes after something happens.

Longer than most modules: the eight events and the one decision are read together.

One pure function, `decide_sync`, takes the payment's current sync fields, what just
happened (a `SyncEvent`), the gateway's poll policy, `now` and a random source, and
returns the whole new sync state. Services store the decision; nothing else writes the
sync columns (a test holds every module to that).

The rules, event by event:

| event | state | next poll | attempts |
|---|---|---|---|
| `Registered` | awaiting_webhook | grace period, or the creation deadline | 0 |
| `Created` (gateway made the payment) | awaiting_webhook | now + first_delay | = |
| `Reported`, terminal | settled (needs_review if flagged or already) | none | +1 if polled |
| `Reported`, pending, polled | polling (or gave_up at the deadline) | backoff | +1 |
| `Reported`, pending, webhook that moved the status | = | pushed back, capped | = |
| `CallFailed` (timeout, 5xx, 429) | polling / gave_up | 1 s doubling, ≤ delay in force | +1 |
| `NotKnown` (gateway 404) | needs_review | none | +1 |
| `Held` (breaker, credentials, no config) | = | the hold's time | = |
| `Refreshed` | = (gave_up revives) | now, or the refresh throttle | = |
| `Resolved` | settled, or polling with a fresh deadline | none / now | = |
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from reconciler.domain.backoff import Random, doubling, honouring, jittered
from reconciler.domain.policy import PollPolicy, give_up_deadline, next_poll
from reconciler.domain.status import Outcome, Source, Status, SyncState

# A merchant's refresh may poll a payment at most once per this many seconds: refreshes
# are free for the caller, gateway calls are not (and count against our rate limits).
REFRESH_MIN_INTERVAL_S = 10.0
# A call that failed transiently (timeout, 5xx, 429) is retried on its own short backoff,
# starting at `PollPolicy.retry_first` (1 s) and doubling, never longer than the delay the
# schedule had in force: a blip costs seconds of staleness, not a whole backoff step.
# The breaker bounds outages.


class ReviewReason(StrEnum):
    """Why a person has to look at a payment."""

    CONFLICTING_REPORTS = "conflicting_reports"
    LATE_SUCCESS = "late_success"
    UNKNOWN_TO_GATEWAY = "unknown_to_gateway"


@dataclass(frozen=True)
class SyncFields:
    """A payment's sync columns, as the decision reads and writes them."""

    state: SyncState
    status: Status
    attempts: int
    next_poll_at: datetime | None
    last_polled_at: datetime | None
    last_delay_s: float | None
    give_up_at: datetime
    created_at: datetime
    review: ReviewReason | None = None
    review_detail: str | None = None
    last_error: str | None = None
    failures: int = 0  # transient call failures in a row


class Keep:
    """Leave `last_error` as it is."""


KEEP = Keep()


@dataclass(frozen=True)
class Registered:
    """A new payment row; `creation_deadline` is set when the gateway must still create it."""

    creation_deadline: datetime | None = None


@dataclass(frozen=True)
class Created:
    """The gateway created the payment (its report follows as a `Reported`)."""


@dataclass(frozen=True)
class Reported:
    """A report went through the status rules; `status` is the payment's status after it."""

    source: Source
    outcome: Outcome
    status: Status
    review: ReviewReason | None = None
    review_detail: str | None = None
    polled: bool = False  # a poll's answer: counts as an attempt and reschedules
    error: str | None | Keep = KEEP  # what `sync.last_error` shows after this report


@dataclass(frozen=True)
class CallFailed:
    """A call that gave no answer (timeout, connection error, 5xx, 429): an attempt."""

    error: str
    retry_after: float | None = None


@dataclass(frozen=True)
class NotKnown:
    """The gateway answered that it does not know the payment."""

    error: str


@dataclass(frozen=True)
class Held:
    """No call went out (breaker open, credentials rejected, gateway off): try at `until`."""

    until: datetime
    error: str


@dataclass(frozen=True)
class Refreshed:
    """Someone asked for a poll as soon as possible."""


@dataclass(frozen=True)
class Resolved:
    """An operator cleared a review flag."""


SyncEvent = Registered | Created | Reported | CallFailed | NotKnown | Held | Refreshed | Resolved


@dataclass(frozen=True)
class SyncDecision:
    """The sync columns after an event; `gave_up` says the schedule ran out just now."""

    state: SyncState
    next_poll_at: datetime | None
    attempts: int
    last_delay_s: float | None
    give_up_at: datetime
    review: ReviewReason | None
    review_detail: str | None
    last_error: str | None
    failures: int = 0
    polled_at: datetime | None = None  # set when this event was a call's answer

    @property
    def gave_up(self) -> bool:
        return self.state is SyncState.GAVE_UP


def initial_fields(
    policy: PollPolicy, *, created_at: datetime, status: Status = Status.PENDING
) -> SyncFields:
    """Describe a payment row before anything has happened to it."""
    return SyncFields(
        state=SyncState.AWAITING_WEBHOOK,
        status=status,
        attempts=0,
        next_poll_at=None,
        last_polled_at=None,
        last_delay_s=None,
        give_up_at=give_up_deadline(policy, created_at),
        created_at=created_at,
    )


def decide_sync(
    fields: SyncFields, event: SyncEvent, policy: PollPolicy, now: datetime, rand: Random
) -> SyncDecision:
    """Decide the payment's sync state after `event` (see the module's table)."""
    same = _unchanged(fields)
    if isinstance(event, Registered):
        at = event.creation_deadline or now + timedelta(seconds=policy.first_delay)
        return replace(same, state=SyncState.AWAITING_WEBHOOK, next_poll_at=at, attempts=0)
    if isinstance(event, Created):
        at = now + timedelta(seconds=policy.first_delay)
        return replace(same, state=SyncState.AWAITING_WEBHOOK, next_poll_at=at, last_error=None)
    if isinstance(event, Reported):
        return _reported(fields, event, policy, now, rand)
    if isinstance(event, CallFailed):
        return _retry(fields, same, event, policy, now, rand)
    if isinstance(event, NotKnown):
        return replace(
            same,
            state=SyncState.NEEDS_REVIEW,
            next_poll_at=None,
            attempts=fields.attempts + 1,
            review=ReviewReason.UNKNOWN_TO_GATEWAY,
            review_detail="the gateway does not know this payment",
            last_error=event.error,
            failures=0,
            polled_at=now,
        )
    if isinstance(event, Held):
        held_to = event.until if fields.next_poll_at is not None else None
        return replace(same, next_poll_at=held_to, last_error=event.error)
    if isinstance(event, Refreshed):
        return _refreshed(fields, same, policy, now)
    return _resolved(fields, same, policy, now)


def _unchanged(fields: SyncFields) -> SyncDecision:
    return SyncDecision(
        state=fields.state,
        next_poll_at=fields.next_poll_at,
        attempts=fields.attempts,
        last_delay_s=fields.last_delay_s,
        give_up_at=fields.give_up_at,
        review=fields.review,
        review_detail=fields.review_detail,
        last_error=fields.last_error,
        failures=fields.failures,
    )


def _reported(
    fields: SyncFields, event: Reported, policy: PollPolicy, now: datetime, rand: Random
) -> SyncDecision:
    same = _unchanged(fields)
    error = fields.last_error if isinstance(event.error, Keep) else event.error
    attempts = fields.attempts + (1 if event.polled else 0)
    after = replace(
        same,
        attempts=attempts,
        last_error=error,
        failures=0 if event.polled else fields.failures,
        polled_at=now if event.polled else None,
    )
    if event.review is not None:
        return replace(
            after,
            state=SyncState.NEEDS_REVIEW,
            next_poll_at=None,
            review=event.review,
            review_detail=event.review_detail,
        )
    if event.status.terminal:
        state = SyncState.NEEDS_REVIEW if fields.state is SyncState.NEEDS_REVIEW else None
        return replace(after, state=state or SyncState.SETTLED, next_poll_at=None)
    if event.polled:
        if fields.review is ReviewReason.UNKNOWN_TO_GATEWAY:
            # The gateway knows the payment after all: back on the schedule.
            after = replace(after, state=SyncState.POLLING, review=None, review_detail=None)
            fields = replace(fields, state=SyncState.POLLING, review=None)
        return _backoff(fields, after, policy, now, rand, None)
    if (
        event.source is Source.WEBHOOK
        and event.outcome is Outcome.APPLIED
        and fields.state in (SyncState.AWAITING_WEBHOOK, SyncState.POLLING)
    ):
        return replace(after, next_poll_at=_pushed_back(fields, policy, now))
    return after


def _pushed_back(fields: SyncFields, policy: PollPolicy, now: datetime) -> datetime | None:
    """Move the next poll to `now + first_delay`: the gateway is alive and talking.

    Capped at one `max_delay` after the last poll (or creation), so a stream of
    non-terminal webhooks can never starve polling; never earlier than already planned
    (a `Retry-After` stays honoured).
    """
    wanted = now + timedelta(seconds=policy.first_delay)
    ceiling = (fields.last_polled_at or fields.created_at) + timedelta(seconds=policy.max_delay)
    target = min(wanted, ceiling)
    if fields.next_poll_at is None:
        return target
    return max(fields.next_poll_at, target)


def _backoff(
    fields: SyncFields,
    after: SyncDecision,
    policy: PollPolicy,
    now: datetime,
    rand: Random,
    retry_after: float | None,
) -> SyncDecision:
    if fields.status.terminal or fields.state in (SyncState.NEEDS_REVIEW, SyncState.SETTLED):
        return replace(after, next_poll_at=None)
    decision = next_poll(
        policy,
        attempt=after.attempts,
        previous_delay=fields.last_delay_s,
        now=now,
        give_up_at=fields.give_up_at,
        retry_after=retry_after,
        rand=rand,
    )
    if decision.gives_up:
        return replace(after, state=SyncState.GAVE_UP, next_poll_at=None)
    return replace(
        after, state=SyncState.POLLING, next_poll_at=decision.at, last_delay_s=decision.delay
    )


def _retry(
    fields: SyncFields,
    same: SyncDecision,
    event: CallFailed,
    policy: PollPolicy,
    now: datetime,
    rand: Random,
) -> SyncDecision:
    """Retry a transiently failed call soon: 1 s, 2 s, 4 s… up to the delay in force."""
    failures = fields.failures + 1
    failed = replace(
        same,
        attempts=fields.attempts + 1,
        last_error=event.error,
        failures=failures,
        polled_at=now,
    )
    if fields.status.terminal or fields.state in (SyncState.NEEDS_REVIEW, SyncState.SETTLED):
        return replace(failed, next_poll_at=None)
    if policy.retry_first <= 0:  # short retries off: the failure waits a whole step
        return _backoff(fields, failed, policy, now, rand, event.retry_after)
    if now >= fields.give_up_at:
        return replace(failed, state=SyncState.GAVE_UP, next_poll_at=None)
    in_force = fields.last_delay_s or policy.first_delay or policy.base_delay
    short = doubling(policy.retry_first, failures, ceiling=in_force)
    wait = honouring(jittered(short, rand), event.retry_after)
    state = SyncState.POLLING if fields.state is SyncState.AWAITING_WEBHOOK else fields.state
    return replace(failed, state=state, next_poll_at=now + timedelta(seconds=wait))


def _refreshed(
    fields: SyncFields, same: SyncDecision, policy: PollPolicy, now: datetime
) -> SyncDecision:
    if fields.state is SyncState.SETTLED:
        return same  # the answer is known: a refresh costs no gateway call
    earliest: datetime = now
    if fields.last_polled_at is not None:
        earliest = max(now, fields.last_polled_at + timedelta(seconds=REFRESH_MIN_INTERVAL_S))
    at: datetime = earliest if fields.next_poll_at is None else min(fields.next_poll_at, earliest)
    if fields.state is SyncState.GAVE_UP:
        return replace(
            same,
            state=SyncState.POLLING,
            next_poll_at=at,
            give_up_at=give_up_deadline(policy, now),
        )
    return replace(same, next_poll_at=at)


def _resolved(
    fields: SyncFields, same: SyncDecision, policy: PollPolicy, now: datetime
) -> SyncDecision:
    cleared = replace(same, review=None, review_detail=None)
    if fields.status.terminal:
        return replace(cleared, state=SyncState.SETTLED, next_poll_at=None)
    return replace(
        cleared,
        state=SyncState.POLLING,
        next_poll_at=now,
        give_up_at=give_up_deadline(policy, now),
    )
