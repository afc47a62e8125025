"""A breaker says which call moved it, so each opening and closing is logged exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconciler.domain.breaker import BreakerState, CircuitBreaker

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def test_only_the_failure_at_the_threshold_says_it_opened_the_breaker() -> None:
    breaker = CircuitBreaker(threshold=3)

    moves = [breaker.record_failure(NOW, "HTTP 503") for _ in range(5)]

    assert moves == [False, False, True, False, False]
    assert breaker.state is BreakerState.OPEN


def test_a_failed_probe_says_it_opened_the_breaker_again() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=30)
    breaker.record_failure(NOW, "timeout")
    later = NOW + timedelta(seconds=31)

    assert breaker.allow(later)  # the probe
    assert breaker.record_failure(later, "timeout") is True


def test_only_the_first_success_after_an_opening_says_it_closed_the_breaker() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=30)
    assert breaker.record_success() is False
    breaker.record_failure(NOW, "timeout")

    assert [breaker.record_success(), breaker.record_success()] == [True, False]


def test_a_trip_says_so_only_when_the_breaker_was_not_open() -> None:
    breaker = CircuitBreaker()

    assert [breaker.trip(NOW, "401"), breaker.trip(NOW, "401")] == [True, False]
