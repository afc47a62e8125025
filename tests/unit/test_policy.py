"""The polling schedule: exact values for the defaults, properties for any policy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.domain.policy import (
    MAX_RETRY_AFTER,
    PollDecision,
    PollPolicy,
    Random,
    first_poll_at,
    give_up_deadline,
    max_polls,
    next_poll,
    parse_retry_after,
)

CREATED = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
NOW = CREATED + timedelta(minutes=5)
FAR = CREATED + timedelta(days=365)
DEFAULT = PollPolicy()


def no_jitter() -> float:
    return 0.0  # keeps exactly half the delay


def almost_full() -> float:
    return 0.999999  # keeps nearly all of it


def poll(
    attempt: int,
    previous_delay: float | None,
    *,
    policy: PollPolicy = DEFAULT,
    now: datetime = NOW,
    give_up_at: datetime = FAR,
    retry_after: float | None = None,
    rand: random.Random | None = None,
) -> PollDecision:
    return next_poll(
        policy,
        attempt=attempt,
        previous_delay=previous_delay,
        now=now,
        give_up_at=give_up_at,
        retry_after=retry_after,
        rand=rand.random if rand else no_jitter,
    )


def seconds_after_now(decision: PollDecision, now: datetime = NOW) -> float:
    assert decision.at is not None
    return (decision.at - now).total_seconds()


def test_the_defaults_match_the_contract() -> None:
    assert (
        DEFAULT.first_delay,
        DEFAULT.base_delay,
        DEFAULT.factor,
        DEFAULT.max_delay,
        DEFAULT.give_up_after,
    ) == (30.0, 30.0, 2.0, 3600.0, 259200.0)


def test_first_poll_is_thirty_seconds_after_creation() -> None:
    assert first_poll_at(DEFAULT, CREATED) == CREATED + timedelta(seconds=30)


def test_the_schedule_gives_up_after_seventy_two_hours() -> None:
    assert give_up_deadline(DEFAULT, CREATED) == CREATED + timedelta(hours=72)


def test_default_delays_double_from_thirty_seconds_up_to_an_hour() -> None:
    delays, previous = [], None
    for attempt in range(1, 11):
        previous = poll(attempt, previous).delay
        delays.append(previous)

    assert delays == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]


@pytest.mark.parametrize(
    ("previous", "rand", "wait"),
    [
        (None, no_jitter, 15.0),  # the first backoff poll: base delay, halved
        (None, almost_full, 29.999985),
        (30.0, no_jitter, 30.0),
        (30.0, almost_full, 59.99997),
        (1920.0, no_jitter, 1800.0),  # 3840 capped at 3600, halved
        (3600.0, almost_full, 3599.9982),
    ],
)
def test_jitter_keeps_between_half_and_all_of_the_delay(
    previous: float | None, rand: Random, wait: float
) -> None:
    decision = next_poll(
        DEFAULT, attempt=3, previous_delay=previous, now=NOW, give_up_at=FAR, rand=rand
    )

    assert seconds_after_now(decision) == pytest.approx(wait, abs=1e-6)


def test_attempt_zero_waits_the_first_delay_without_jitter() -> None:
    decision = poll(0, None)

    assert (seconds_after_now(decision), decision.delay) == (30.0, 30.0)


def test_retry_after_is_a_floor() -> None:
    decision = poll(2, 30.0, retry_after=120.0)

    assert seconds_after_now(decision) == 120.0
    assert decision.delay == 60.0  # the schedule itself does not jump to the hint


def test_a_short_retry_after_does_not_shorten_the_schedule() -> None:
    assert seconds_after_now(poll(2, 30.0, retry_after=5.0)) == 30.0


def test_an_absurd_retry_after_is_capped_instead_of_overflowing_the_calendar() -> None:
    decision = poll(2, 30.0, retry_after=parse_retry_after("99999999999999", NOW))

    assert seconds_after_now(decision) == MAX_RETRY_AFTER


def test_the_schedule_gives_up_at_the_deadline() -> None:
    decision = poll(7, 1920.0, give_up_at=NOW)

    assert decision.gives_up
    assert decision.at is None
    assert decision.delay == 1920.0


def test_the_schedule_gives_up_after_the_deadline_even_with_a_retry_after() -> None:
    assert poll(7, 1920.0, give_up_at=NOW - timedelta(seconds=1), retry_after=10.0).gives_up


def test_the_schedule_still_polls_a_microsecond_before_the_deadline() -> None:
    assert not poll(7, 1920.0, give_up_at=NOW + timedelta(microseconds=1)).gives_up


def test_max_polls_for_the_default_policy() -> None:
    # The first poll, 7 growing ones (half of 30 + 60 + ... + 1920 = 1905 s), then 1800 s
    # per poll until the 259170 s after the first poll are spent: ceil(257265 / 1800) = 143.
    assert max_polls(DEFAULT) == 1 + 7 + 143


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first_delay": -1},
        {"give_up_after": -1},
        {"factor": 0.5},
        {"base_delay": 0},
        {"max_delay": 0},
    ],
)
def test_an_impossible_policy_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PollPolicy(**kwargs)


# --- properties -----------------------------------------------------------------------------

policies = st.builds(
    lambda first, base, factor, max_mult, give_up_mult: PollPolicy(
        first_delay=first,
        base_delay=base,
        factor=factor,
        max_delay=base * max_mult,
        give_up_after=base * max_mult * give_up_mult,
    ),
    first=st.floats(0, 1000),
    base=st.floats(0.1, 100),
    factor=st.floats(1, 4),
    max_mult=st.floats(1, 20),
    give_up_mult=st.floats(0, 100),
)
retry_afters = st.none() | st.floats(0, 10_000)
previous_delays = st.none() | st.floats(0.1, 10_000)


@given(
    policy=policies,
    attempt=st.integers(1, 50),
    previous=previous_delays,
    retry_after=retry_afters,
    rand=st.randoms(use_true_random=False),
)
def test_next_poll_stays_between_retry_after_and_the_longest_wait(
    policy: PollPolicy,
    attempt: int,
    previous: float | None,
    retry_after: float | None,
    rand: random.Random,
) -> None:
    decision = poll(attempt, previous, policy=policy, retry_after=retry_after, rand=rand)

    assert decision.at is not None
    assert decision.at >= NOW + timedelta(seconds=retry_after or 0.0)
    assert decision.at <= NOW + timedelta(seconds=max(policy.max_delay, retry_after or 0.0))


@given(
    policy=policies,
    attempt=st.integers(1, 50),
    previous=previous_delays,
    rand=st.randoms(use_true_random=False),
)
def test_jitter_never_takes_more_than_half_the_delay(
    policy: PollPolicy, attempt: int, previous: float | None, rand: random.Random
) -> None:
    decision = poll(attempt, previous, policy=policy, rand=rand)

    assert decision.at is not None
    assert decision.at >= NOW + timedelta(seconds=0.5 * decision.delay)
    assert decision.at <= NOW + timedelta(seconds=decision.delay)


@given(policy=policies, attempts=st.integers(2, 60))
def test_the_undithered_delay_never_shrinks(policy: PollPolicy, attempts: int) -> None:
    delays: list[float] = []
    previous = None
    for attempt in range(1, attempts + 1):
        previous = poll(attempt, previous, policy=policy).delay
        delays.append(previous)

    assert delays == sorted(delays)
    assert delays[0] == min(policy.base_delay, policy.max_delay)
    assert max(delays) <= policy.max_delay


def simulate(policy: PollPolicy, rand: random.Random) -> int:
    """Run one payment's whole schedule the way the sweep does; return how many polls."""
    give_up_at = give_up_deadline(policy, CREATED)
    now = first_poll_at(policy, CREATED)
    polls, previous, limit = 1, None, max_polls(policy) + 1
    while polls <= limit:
        decision = poll(polls, previous, policy=policy, now=now, give_up_at=give_up_at, rand=rand)
        if decision.at is None:
            break
        assert decision.at > now
        now, previous, polls = decision.at, decision.delay, polls + 1
    return polls


@given(policy=policies, rand=st.randoms(use_true_random=False))
def test_a_whole_schedule_makes_at_most_max_polls(policy: PollPolicy, rand: random.Random) -> None:
    assert simulate(policy, rand) <= max_polls(policy)


@given(policy=policies)
def test_max_polls_is_reached_when_jitter_always_takes_half(policy: PollPolicy) -> None:
    # The bound is tight (up to microsecond rounding): keeping only half of every delay
    # uses it all.
    zero = random.Random()
    zero.random = no_jitter  # type: ignore[method-assign]

    assert simulate(policy, zero) >= max_polls(policy) - 1


# --- Retry-After ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),  # not RFC 9110, but a fraction is a clear enough request
        ("Sat, 28 Nov 2026 10:02:00 GMT", 120.0),
        ("Sat, 28 Nov 2026 09:59:00 GMT", 0.0),  # a date in the past: go ahead now
        ("soon", None),
        ("", None),
        ("-5", None),
        ("inf", None),
        ("nan", None),
        ("²", None),  # str.isdigit() says yes, float() says no
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, CREATED) == seconds


@given(st.text(max_size=40))
def test_parse_retry_after_never_raises_on_garbage(header: str) -> None:
    seconds = parse_retry_after(header, CREATED)

    assert seconds is None or seconds >= 0
