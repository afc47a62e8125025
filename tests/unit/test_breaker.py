"""The per-gateway circuit breaker, driven by a hand-moved clock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from reconciler.domain.breaker import BreakerState, CircuitBreaker

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def opened(cooldown: float = 30.0, max_cooldown: float = 600.0) -> CircuitBreaker:
    breaker = CircuitBreaker(threshold=3, cooldown=cooldown, max_cooldown=max_cooldown)
    for _ in range(3):
        breaker.record_failure(T0)
    assert breaker.state is BreakerState.OPEN
    return breaker


def test_a_closed_breaker_lets_every_call_through() -> None:
    breaker = CircuitBreaker()

    assert all(breaker.allow(T0) for _ in range(100))


def test_the_breaker_opens_at_the_threshold_and_not_before() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30.0)

    breaker.record_failure(T0)
    breaker.record_failure(T0)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow(T0)

    breaker.record_failure(T0)
    assert breaker.state is BreakerState.OPEN
    assert breaker.open_until == at(30)
    assert breaker.opened_count == 1


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    breaker = CircuitBreaker(threshold=3)

    for _ in range(2):
        breaker.record_failure(T0)
    breaker.record_success()
    for _ in range(2):
        breaker.record_failure(T0)

    assert breaker.state is BreakerState.CLOSED


def test_an_open_breaker_refuses_calls_until_the_cooldown_is_over() -> None:
    breaker = opened()

    assert not breaker.allow(T0)
    assert not breaker.allow(at(29.999999))
    assert breaker.allow(at(30))
    assert breaker.state is BreakerState.HALF_OPEN


def test_exactly_one_probe_goes_out_when_half_open() -> None:
    breaker = opened()

    answers = [breaker.allow(at(31)) for _ in range(50)]

    assert answers.count(True) == 1
    assert answers[0]


def test_exactly_one_probe_goes_out_across_threads() -> None:
    breaker = opened()
    threads, per_thread = 8, 200
    start = threading.Barrier(threads)
    allowed: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        start.wait()
        mine = [breaker.allow(at(31)) for _ in range(per_thread)]
        with lock:
            allowed.extend(mine)

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert len(allowed) == threads * per_thread
    assert allowed.count(True) == 1


def test_a_successful_probe_closes_the_breaker() -> None:
    breaker = opened()
    assert breaker.allow(at(31))

    breaker.record_success()

    assert breaker.state is BreakerState.CLOSED
    assert (breaker.failures, breaker.open_until, breaker.current_cooldown) == (0, None, 0.0)
    assert all(breaker.allow(at(31)) for _ in range(10))


def test_a_failed_probe_reopens_with_a_doubled_cooldown_capped_at_the_maximum() -> None:
    breaker = opened(cooldown=30.0, max_cooldown=100.0)
    now, cooldowns = T0, []

    for _ in range(4):
        now = breaker.open_until or now
        assert breaker.allow(now)
        breaker.record_failure(now)
        assert breaker.state is BreakerState.OPEN
        assert breaker.open_until == now + timedelta(seconds=breaker.current_cooldown)
        assert not breaker.allow(now)
        cooldowns.append(breaker.current_cooldown)

    assert cooldowns == [60.0, 100.0, 100.0, 100.0]
    assert breaker.opened_count == 5


def test_the_cooldown_starts_over_after_the_gateway_recovers() -> None:
    breaker = opened(cooldown=30.0)
    assert breaker.allow(at(30))
    breaker.record_failure(at(30))  # 60 s now
    assert breaker.allow(at(90))
    breaker.record_success()

    for _ in range(3):
        breaker.record_failure(at(100))

    assert breaker.open_until == at(130)


def test_trip_opens_at_once() -> None:
    breaker = CircuitBreaker(threshold=5, cooldown=30.0)

    breaker.trip(T0)

    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow(at(29))
    assert breaker.allow(at(30))


def test_a_failure_while_open_does_not_extend_the_cooldown() -> None:
    # Calls that were already in flight when the breaker opened report late failures.
    breaker = opened()

    breaker.record_failure(at(10))

    assert breaker.open_until == at(30)


@given(rand=st.floats(0, 1, exclude_max=True))
def test_retry_at_spreads_over_one_cooldown_after_the_breaker_reopens(rand: float) -> None:
    breaker = opened(cooldown=30.0)

    when = breaker.retry_at(at(5), lambda: rand)

    assert breaker.open_until == at(30)
    # <= rather than <: a rand a hair below 1 rounds to the last microsecond.
    assert at(30) <= when <= at(60)


def test_retry_at_uses_the_current_cooldown_once_it_has_grown() -> None:
    breaker = opened(cooldown=30.0)
    assert breaker.allow(at(30))
    breaker.record_failure(at(30))  # open until 90, cooldown 60

    assert breaker.retry_at(at(40), lambda: 0.0) == at(90)
    assert breaker.retry_at(at(40), lambda: 0.5) == at(120)


def test_retry_at_starts_from_now_when_the_cooldown_is_already_over() -> None:
    breaker = opened(cooldown=30.0)

    assert breaker.retry_at(at(45), lambda: 0.5) == at(60)
