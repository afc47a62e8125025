"""The delivery schedule and decision: exact values for the defaults, properties for any policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.domain.delivery import (
    DeliveryOutcome,
    DeliveryPolicy,
    DeliveryRow,
    DeliveryStatus,
    decide_delivery,
    first_attempt_at,
    give_up_deadline,
    next_attempt,
)

CREATED = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
DEFAULT = DeliveryPolicy()
GIVE_UP = give_up_deadline(DEFAULT, CREATED)


def no_jitter() -> float:
    return 0.0  # keeps exactly half the delay


def almost_full() -> float:
    return 0.999999


def test_the_defaults_are_the_contract_s() -> None:
    assert (DEFAULT.first_delay, DEFAULT.base_delay, DEFAULT.max_delay) == (0, 5, 36000)
    assert (DEFAULT.factor, DEFAULT.give_up_after) == (2, 259200)
    assert first_attempt_at(DEFAULT, CREATED) == CREATED
    assert CREATED + timedelta(days=3) == GIVE_UP


@pytest.mark.parametrize(
    ("attempts", "previous_delay", "delay"),
    [
        (1, None, 5.0),  # first failure: the base delay
        (2, 5.0, 10.0),
        (3, 10.0, 20.0),
        (13, 20480.0, 36000.0),  # 40960 capped at 10 h
        (20, 36000.0, 36000.0),
    ],
)
def test_undithered_delays_double_up_to_ten_hours(
    attempts: int, previous_delay: float | None, delay: float
) -> None:
    decision = next_attempt(
        DEFAULT,
        attempts=attempts,
        previous_delay=previous_delay,
        now=CREATED,
        give_up_at=GIVE_UP,
        rand=no_jitter,
    )
    assert decision.delay == delay
    assert decision.at == CREATED + timedelta(seconds=delay / 2)


def test_retry_after_is_a_floor_capped_at_the_longest_gap() -> None:
    at = next_attempt(
        DEFAULT,
        attempts=1,
        previous_delay=None,
        now=CREATED,
        give_up_at=GIVE_UP,
        retry_after=120,
        rand=almost_full,
    ).at
    assert at == CREATED + timedelta(seconds=120)
    capped = next_attempt(
        DEFAULT,
        attempts=1,
        previous_delay=None,
        now=CREATED,
        give_up_at=GIVE_UP,
        retry_after=10**9,
        rand=no_jitter,
    ).at
    assert capped == CREATED + timedelta(seconds=DEFAULT.max_delay)


def test_the_last_attempt_is_at_the_deadline_and_a_failure_then_gives_up() -> None:
    near = GIVE_UP - timedelta(seconds=60)
    last = next_attempt(
        DEFAULT, attempts=9, previous_delay=36000.0, now=near, give_up_at=GIVE_UP, rand=no_jitter
    )
    assert last.at == GIVE_UP
    after = next_attempt(
        DEFAULT,
        attempts=10,
        previous_delay=36000.0,
        now=GIVE_UP,
        give_up_at=GIVE_UP,
        rand=no_jitter,
    )
    assert after.gives_up


policies = st.builds(
    DeliveryPolicy,
    first_delay=st.floats(0, 60),
    base_delay=st.floats(0.1, 600),
    factor=st.floats(1, 4),
    max_delay=st.floats(1, 86400),
    give_up_after=st.floats(0, 10 * 86400),
)


@given(
    policy=policies,
    attempts=st.integers(1, 100),
    previous=st.none() | st.floats(0.1, 10**6),
    elapsed=st.floats(0, 20 * 86400),
    retry_after=st.none() | st.floats(0, 10**7),
    r=st.floats(0, 0.999999),
)
def test_any_schedule_waits_between_half_and_all_of_its_delay_and_never_past_the_deadline(
    policy: DeliveryPolicy,
    attempts: int,
    previous: float | None,
    elapsed: float,
    retry_after: float | None,
    r: float,
) -> None:
    give_up_at = give_up_deadline(policy, CREATED)
    now = CREATED + timedelta(seconds=elapsed)
    decision = next_attempt(
        policy,
        attempts=attempts,
        previous_delay=previous,
        now=now,
        give_up_at=give_up_at,
        retry_after=retry_after,
        rand=lambda: r,
    )
    if now >= give_up_at:
        assert decision.gives_up
        return
    assert decision.at is not None and now <= decision.at <= give_up_at
    assert min(policy.base_delay, policy.max_delay) <= decision.delay <= policy.max_delay
    wait = (decision.at - now).total_seconds()
    floor = min(retry_after or 0.0, policy.max_delay)
    expected_low = max(decision.delay / 2, floor)
    expected_high = max(decision.delay, floor)
    remaining = (give_up_at - now).total_seconds()
    tolerance = 1e-3  # timedelta keeps microseconds
    assert min(expected_low, remaining) - tolerance <= wait <= expected_high + tolerance


# Policies whose whole schedule is short enough to walk attempt by attempt.
walkable = st.builds(
    DeliveryPolicy,
    first_delay=st.floats(0, 60),
    base_delay=st.floats(1, 600),
    factor=st.floats(1.5, 4),
    max_delay=st.floats(600, 86400),
    give_up_after=st.floats(0, 4 * 86400),
)


@given(policy=walkable, r=st.floats(0, 0.999999))
def test_any_schedule_ends_in_a_bounded_number_of_attempts(
    policy: DeliveryPolicy, r: float
) -> None:
    give_up_at = give_up_deadline(policy, CREATED)
    now, previous, attempts = CREATED, None, 0
    bound = 2 + policy.give_up_after / (0.5 * min(policy.base_delay, policy.max_delay))
    while True:
        attempts += 1
        decision = next_attempt(
            policy,
            attempts=attempts,
            previous_delay=previous,
            now=now,
            give_up_at=give_up_at,
            rand=lambda: r,
        )
        if decision.at is None:
            break
        assert decision.at > now or decision.at == give_up_at
        now, previous = max(decision.at, now + timedelta(microseconds=1)), decision.delay
        assert attempts <= bound


ROW = DeliveryRow(attempts=2, last_delay_s=10.0, give_up_at=GIVE_UP)


@pytest.mark.parametrize(
    ("outcome", "status", "code", "error", "disable"),
    [
        (DeliveryOutcome(status_code=200), DeliveryStatus.DELIVERED, 200, None, None),
        (DeliveryOutcome(status_code=204), DeliveryStatus.DELIVERED, 204, None, None),
        (
            DeliveryOutcome(status_code=410),
            DeliveryStatus.FAILED,
            410,
            "HTTP 410",
            "the endpoint answered 410 Gone",
        ),
        (DeliveryOutcome(status_code=500), DeliveryStatus.PENDING, 500, "HTTP 500", None),
        (DeliveryOutcome(status_code=400), DeliveryStatus.PENDING, 400, "HTTP 400", None),
        # A redirect is a failure: following it could lead anywhere.
        (
            DeliveryOutcome(status_code=301, location="https://x.example/"),
            DeliveryStatus.PENDING,
            301,
            "HTTP 301: redirect to https://x.example/ not followed",
            None,
        ),
        (
            DeliveryOutcome(error="timed out after 15 s"),
            DeliveryStatus.PENDING,
            None,
            "timed out after 15 s",
            None,
        ),
        (
            DeliveryOutcome(error="destination refused: 10.0.0.1"),
            DeliveryStatus.PENDING,
            None,
            "destination refused: 10.0.0.1",
            None,
        ),
    ],
)
def test_each_outcome_gives_the_row_its_next_state(
    outcome: DeliveryOutcome,
    status: DeliveryStatus,
    code: int | None,
    error: str | None,
    disable: str | None,
) -> None:
    now = CREATED + timedelta(minutes=1)
    update = decide_delivery(ROW, outcome, now=now, policy=DEFAULT, rand=no_jitter)
    assert (update.status, update.attempts, update.last_attempt_at) == (status, 3, now)
    assert (update.last_response_status, update.last_error) == (code, error)
    assert update.disable_endpoint == disable
    if status is DeliveryStatus.DELIVERED:
        assert (update.delivered_at, update.next_attempt_at) == (now, None)
    elif status is DeliveryStatus.PENDING:
        assert update.next_attempt_at == now + timedelta(seconds=10)  # 20 s halved
        assert update.last_delay_s == 20.0
    else:
        assert update.next_attempt_at is None


@pytest.mark.parametrize(
    ("code", "retry_after", "wait"),
    [
        (429, "300", 300),
        (503, "300", 300),
        (503, "Sat, 28 Nov 2026 10:11:00 GMT", 600),  # an HTTP date, 10 min after `now`
        (500, "300", 10),  # only 429 and 503 carry a meaningful Retry-After
        (429, "soon", 10),  # unreadable: the schedule alone
    ],
)
def test_retry_after_on_429_and_503_delays_the_next_attempt(
    code: int, retry_after: str, wait: float
) -> None:
    now = CREATED + timedelta(minutes=1)
    outcome = DeliveryOutcome(status_code=code, retry_after=retry_after)
    update = decide_delivery(ROW, outcome, now=now, policy=DEFAULT, rand=no_jitter)
    assert update.next_attempt_at == now + timedelta(seconds=wait)


def test_a_failure_at_the_deadline_fails_the_delivery() -> None:
    outcome = DeliveryOutcome(status_code=500)
    update = decide_delivery(ROW, outcome, now=GIVE_UP, policy=DEFAULT, rand=no_jitter)
    assert (update.status, update.next_attempt_at) == (DeliveryStatus.FAILED, None)
    assert update.last_error == "HTTP 500"
