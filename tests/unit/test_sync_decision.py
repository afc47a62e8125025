"""The sync decision, event by event, and the properties that hold whatever happens."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.domain.policy import PollPolicy
from reconciler.domain.status import Outcome, Source, Status, SyncState
from reconciler.domain.sync import (
    REFRESH_MIN_INTERVAL_S,
    CallFailed,
    Created,
    Held,
    NotKnown,
    Refreshed,
    Registered,
    Reported,
    Resolved,
    ReviewReason,
    SyncDecision,
    SyncEvent,
    SyncFields,
    decide_sync,
    initial_fields,
)

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
POLICY = PollPolicy(first_delay=30, base_delay=30, factor=2, max_delay=3600, give_up_after=259200)


def half(_: object = None) -> float:
    return 0.5


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def polling(**changes: object) -> SyncFields:
    """A pending payment polled once, 60 s after creation, next poll due at 120 s."""
    fields = replace(
        initial_fields(POLICY, created_at=T0),
        state=SyncState.POLLING,
        attempts=1,
        next_poll_at=at(120),
        last_polled_at=at(60),
        last_delay_s=30.0,
    )
    return replace(fields, **changes)  # type: ignore[arg-type]


NOW = at(90)


def decide(fields: SyncFields, event: SyncEvent, now: datetime = NOW) -> SyncDecision:
    return decide_sync(fields, event, POLICY, now, half)


def webhook(outcome: Outcome = Outcome.APPLIED, status: Status = Status.PENDING) -> Reported:
    return Reported(source=Source.WEBHOOK, outcome=outcome, status=status)


def test_a_registered_payment_waits_a_grace_period_for_its_webhook() -> None:
    decision = decide(initial_fields(POLICY, created_at=T0), Registered(), now=T0)
    assert (decision.state, decision.next_poll_at, decision.attempts) == (
        SyncState.AWAITING_WEBHOOK,
        at(30),
        0,
    )


def test_a_payment_still_to_be_created_is_due_at_its_creation_deadline() -> None:
    decision = decide(initial_fields(POLICY, created_at=T0), Registered(at(9)), now=T0)
    assert decision.next_poll_at == at(9)


def test_creation_at_the_gateway_restarts_the_grace_period_and_clears_the_error() -> None:
    fields = polling(last_error="create: gateway timeout")
    decision = decide(fields, Created(), now=at(200))
    assert (decision.state, decision.next_poll_at, decision.last_error) == (
        SyncState.AWAITING_WEBHOOK,
        at(230),
        None,
    )


@pytest.mark.parametrize(
    ("event", "state", "next_poll_at", "attempts"),
    [
        (webhook(status=Status.SUCCEEDED), SyncState.SETTLED, None, 1),
        (
            Reported(Source.POLL, Outcome.APPLIED, Status.FAILED, polled=True),
            SyncState.SETTLED,
            None,
            2,
        ),
        # A poll's pending answer: the next delay doubles (30 s -> 60 s, half kept by jitter).
        (
            Reported(Source.POLL, Outcome.UNCHANGED, Status.PENDING, polled=True),
            SyncState.POLLING,
            at(90 + 45),
            2,
        ),
        # A webhook that moved the gateway status: the gateway is talking, poll later.
        (webhook(), SyncState.POLLING, at(120), 1),
        # A transient failure retries on its own short backoff: 1 s, three quarters kept.
        (CallFailed("gateway timeout"), SyncState.POLLING, at(90.75), 2),
        (CallFailed("HTTP 429 from the gateway", retry_after=600), SyncState.POLLING, at(690), 2),
        (NotKnown("the gateway does not know this payment"), SyncState.NEEDS_REVIEW, None, 2),
        (Held(until=at(500), error="circuit open"), SyncState.POLLING, at(500), 1),
        (Refreshed(), SyncState.POLLING, at(90), 1),
    ],
)
def test_each_event_decides_state_next_poll_and_attempts(
    event: SyncEvent, state: SyncState, next_poll_at: datetime | None, attempts: int
) -> None:
    decision = decide(polling(), event)
    assert (decision.state, decision.next_poll_at, decision.attempts) == (
        state,
        next_poll_at,
        attempts,
    )


def test_a_non_terminal_webhook_pushes_the_next_poll_back_to_the_grace_period() -> None:
    decision = decide(polling(next_poll_at=at(95)), webhook(), now=at(90))
    assert decision.next_poll_at == at(120)


def test_a_repeated_identical_webhook_does_not_push_the_schedule_back() -> None:
    fields = polling(next_poll_at=at(95))
    assert decide(fields, webhook(Outcome.UNCHANGED)).next_poll_at == at(95)
    assert decide(fields, webhook(Outcome.STALE)).next_poll_at == at(95)


def test_webhooks_never_push_a_poll_past_one_max_delay_after_the_last_poll() -> None:
    fields = polling(next_poll_at=at(3600))
    decision = decide(fields, webhook(), now=at(3650))
    assert decision.next_poll_at == at(60 + 3600)


def test_a_push_back_never_pulls_a_retry_after_forward() -> None:
    fields = polling(next_poll_at=at(7200))
    assert decide(fields, webhook(), now=at(100)).next_poll_at == at(7200)


def test_conflicting_terminal_reports_flag_the_payment_for_review() -> None:
    fields = polling(state=SyncState.SETTLED, status=Status.SUCCEEDED, next_poll_at=None)
    event = Reported(
        Source.WEBHOOK,
        Outcome.CONFLICT,
        Status.SUCCEEDED,
        review=ReviewReason.CONFLICTING_REPORTS,
        review_detail="failed reported after succeeded",
    )
    decision = decide(fields, event)
    assert (decision.state, decision.review, decision.review_detail, decision.next_poll_at) == (
        SyncState.NEEDS_REVIEW,
        ReviewReason.CONFLICTING_REPORTS,
        "failed reported after succeeded",
        None,
    )


def test_a_pending_poll_answer_clears_an_unknown_to_the_gateway_review() -> None:
    fields = polling(
        state=SyncState.NEEDS_REVIEW,
        review=ReviewReason.UNKNOWN_TO_GATEWAY,
        review_detail="the gateway does not know this payment",
        next_poll_at=at(90),
    )
    event = Reported(Source.POLL, Outcome.APPLIED, Status.PENDING, polled=True)
    decision = decide(fields, event)
    assert (decision.state, decision.review) == (SyncState.POLLING, None)
    assert decision.next_poll_at is not None


def test_a_pending_poll_answer_keeps_a_conflict_review_without_a_schedule() -> None:
    fields = polling(
        state=SyncState.NEEDS_REVIEW,
        review=ReviewReason.CONFLICTING_REPORTS,
        next_poll_at=at(90),
    )
    event = Reported(Source.POLL, Outcome.UNCHANGED, Status.PENDING, polled=True)
    decision = decide(fields, event)
    assert (decision.state, decision.next_poll_at) == (SyncState.NEEDS_REVIEW, None)


@pytest.mark.parametrize(
    ("failures", "last_delay_s", "wait"),
    [
        (0, 30.0, 0.75),  # the first failure: 1 s (jitter keeps three quarters here)
        (3, 30.0, 6.0),  # the fourth in a row: 8 s
        (9, 30.0, 22.5),  # 512 s would exceed the 30 s delay in force: capped there
        (9, None, 22.5),  # never polled yet: the grace period is the delay in force
    ],
)
def test_failed_calls_retry_on_a_short_backoff_capped_by_the_delay_in_force(
    failures: int, last_delay_s: float | None, wait: float
) -> None:
    fields = polling(failures=failures, last_delay_s=last_delay_s)
    decision = decide(fields, CallFailed("gateway timeout"))
    assert decision.next_poll_at == at(90 + wait)
    assert (decision.failures, decision.last_delay_s) == (failures + 1, last_delay_s)


def test_an_answer_after_failures_resets_the_short_backoff() -> None:
    event = Reported(Source.POLL, Outcome.UNCHANGED, Status.PENDING, polled=True)
    assert decide(polling(failures=4), event).failures == 0


def test_the_schedule_gives_up_at_its_deadline() -> None:
    fields = polling(give_up_at=at(100))
    decision = decide(fields, CallFailed("gateway timeout"), now=at(100))
    assert (decision.state, decision.next_poll_at, decision.gave_up) == (
        SyncState.GAVE_UP,
        None,
        True,
    )


def test_a_refresh_of_a_settled_payment_changes_nothing() -> None:
    fields = polling(state=SyncState.SETTLED, status=Status.SUCCEEDED, next_poll_at=None)
    assert decide(fields, Refreshed()).next_poll_at is None


def test_refreshes_poll_a_payment_at_most_once_per_throttle_interval() -> None:
    fields = polling(last_polled_at=at(88), next_poll_at=at(500))
    decision = decide(fields, Refreshed(), now=at(90))
    assert decision.next_poll_at == at(88 + REFRESH_MIN_INTERVAL_S)


def test_a_refresh_revives_a_payment_that_gave_up_with_a_fresh_deadline() -> None:
    fields = polling(state=SyncState.GAVE_UP, next_poll_at=None, give_up_at=at(10))
    decision = decide(fields, Refreshed(), now=at(90))
    assert (decision.state, decision.next_poll_at, decision.give_up_at) == (
        SyncState.POLLING,
        at(90),
        at(90 + POLICY.give_up_after),
    )


@pytest.mark.parametrize(
    ("status", "state", "next_poll_at"),
    [(Status.SUCCEEDED, SyncState.SETTLED, None), (Status.PENDING, SyncState.POLLING, at(90))],
)
def test_resolving_a_review_settles_or_resumes_polling(
    status: Status, state: SyncState, next_poll_at: datetime | None
) -> None:
    fields = polling(state=SyncState.NEEDS_REVIEW, status=status, review=ReviewReason.LATE_SUCCESS)
    decision = decide(fields, Resolved())
    assert (decision.state, decision.next_poll_at, decision.review) == (state, next_poll_at, None)


# Properties -------------------------------------------------------------------------------

statuses = st.sampled_from(list(Status))
events = st.one_of(
    st.builds(
        Reported,
        source=st.sampled_from(list(Source)),
        outcome=st.sampled_from(list(Outcome)),
        status=statuses,
        polled=st.booleans(),
    ),
    st.builds(CallFailed, error=st.just("x"), retry_after=st.none() | st.floats(0, 10_000)),
    st.builds(NotKnown, error=st.just("x")),
    st.builds(
        Held,
        until=st.integers(0, 100_000).map(at),
        error=st.just("circuit open"),
    ),
    st.just(Refreshed()),
    st.just(Resolved()),
    st.just(Created()),
)


def _advance(fields: SyncFields, decision: SyncDecision, status: Status) -> SyncFields:
    return replace(
        fields,
        state=decision.state,
        status=status,
        attempts=decision.attempts,
        next_poll_at=decision.next_poll_at,
        last_polled_at=decision.polled_at or fields.last_polled_at,
        last_delay_s=decision.last_delay_s,
        give_up_at=decision.give_up_at,
        review=decision.review,
        last_error=decision.last_error,
    )


@given(st.lists(st.tuples(events, st.integers(0, 5_000)), max_size=40), st.floats(0, 0.999))
def test_attempts_never_decrease_and_settled_payments_are_never_polled(
    steps: list[tuple[SyncEvent, int]], r: float
) -> None:
    fields = polling()
    now = at(90)
    for event, gap in steps:
        now += timedelta(seconds=gap)
        status = event.status if isinstance(event, Reported) else fields.status
        decision = decide_sync(fields, event, POLICY, now, lambda: r)
        assert decision.attempts >= fields.attempts
        if decision.state is SyncState.SETTLED:
            assert decision.next_poll_at is None
        fields = _advance(fields, decision, status)


@given(st.floats(0, 50_000), st.floats(0, 0.999), st.integers(1, 20))
def test_a_failed_call_is_never_retried_before_its_retry_after(
    retry_after: float, r: float, attempts: int
) -> None:
    fields = polling(attempts=attempts)
    decision = decide_sync(fields, CallFailed("x", retry_after), POLICY, at(90), lambda: r)
    if decision.next_poll_at is not None:
        floor = min(retry_after, 7 * 24 * 3600.0)
        assert decision.next_poll_at >= at(90) + timedelta(seconds=floor)


@given(
    st.lists(
        st.tuples(st.integers(1, 900), st.sampled_from([Outcome.APPLIED, Outcome.UNCHANGED])),
        min_size=1,
        max_size=200,
    ),
    st.floats(0, 0.999),
)
def test_webhooks_cannot_starve_polling(steps: list[tuple[int, Outcome]], r: float) -> None:
    """Whatever non-terminal webhooks arrive, a pending payment is polled once per max_delay."""
    fields = replace(polling(), next_poll_at=at(60 + 30), last_polled_at=at(60))
    now = at(60)
    last_poll = at(60)
    for gap, outcome in steps:
        now += timedelta(seconds=gap)
        while fields.next_poll_at is not None and fields.next_poll_at <= now:
            # The sweep polls when due: the gap since the last poll stays within max_delay.
            polled_at = fields.next_poll_at
            assert polled_at - last_poll <= timedelta(seconds=POLICY.max_delay)
            event = Reported(Source.POLL, Outcome.UNCHANGED, Status.PENDING, polled=True)
            decision = decide_sync(fields, event, POLICY, polled_at, lambda: r)
            fields = _advance(fields, decision, Status.PENDING)
            last_poll = polled_at
        decision = decide_sync(fields, webhook(outcome), POLICY, now, lambda: r)
        fields = _advance(fields, decision, Status.PENDING)
        assert fields.next_poll_at is not None
        assert fields.next_poll_at - last_poll <= timedelta(seconds=POLICY.max_delay)
