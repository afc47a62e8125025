"""The delay histogram, its quantiles, the first-delay choice and the webhook verdicts."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from reconciler.config import ConfigError, Settings
from reconciler.domain.reliability import (
    AutoBounds,
    DelaySource,
    FirstDelay,
    WebhookVerdict,
    bucket_bounds,
    bucket_of,
    choose_first_delay,
    judge_webhook,
    missed,
    missed_by_poll,
    quantile,
    slot_start,
)
from reconciler.domain.status import Outcome, Source, Status

BOUNDS = AutoBounds()


def histogram(delays: list[float]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for delay in delays:
        counts[bucket_of(delay)] = counts.get(bucket_of(delay), 0) + 1
    return counts


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1, 0.11, 1.0, 2.0, 29.9, 30.0, 600.0, 86_400.0])
def test_a_delay_falls_inside_its_bucket(delay: float) -> None:
    low, high = bucket_bounds(bucket_of(delay))
    assert low <= delay <= high * (1 + 1e-9)
    assert delay == 0.0 or delay > low


@pytest.mark.parametrize("delay", [-5.0, math.nan, 10**9])
def test_odd_delays_land_in_the_first_or_last_bucket(delay: float) -> None:
    assert bucket_of(delay) in (0, 99)


@pytest.mark.parametrize(("q", "sigma"), [(0.5, 0.5), (0.95, 0.5), (0.99, 1.5), (0.5, 1.5)])
def test_quantiles_of_a_log_normal_sample_are_within_a_bucket_width(q: float, sigma: float) -> None:
    rng = random.Random(11)
    sample = sorted(rng.lognormvariate(math.log(4.0), sigma) for _ in range(20_000))
    exact = sample[int(q * len(sample)) - 1]
    assert quantile(histogram(sample), q) == pytest.approx(exact, rel=0.15)


def test_no_samples_have_no_quantile() -> None:
    assert quantile({}, 0.5) is None


def test_fewer_than_fifty_delays_wait_the_fallback() -> None:
    chosen = choose_first_delay(
        histogram([2.0] * 49), polled_first=0, by_webhook=49, late=0, bounds=BOUNDS
    )
    assert chosen == FirstDelay(30.0, DelaySource.FALLBACK)


@pytest.mark.parametrize(
    ("delay", "expected"),
    [
        (20.0, 20.0),
        (1.0, 5.0),  # below the minimum
        (3600.0, 600.0),  # above the maximum
    ],
)
def test_fifty_delays_set_the_quantile_within_bounds(delay: float, expected: float) -> None:
    chosen = choose_first_delay(
        histogram([delay] * 50), polled_first=0, by_webhook=50, late=0, bounds=BOUNDS
    )
    assert chosen.source is DelaySource.OBSERVED
    assert chosen.seconds == pytest.approx(expected, rel=0.15)


@pytest.mark.parametrize(
    ("polled_first", "late", "by_webhook", "source"),
    [
        (51, 0, 49, DelaySource.MISSED_MAJORITY),
        (50, 0, 50, DelaySource.OBSERVED),  # half is not more than half
        (30, 0, 0, DelaySource.OBSERVED),  # too few terminal statuses to say
        # polls beat the webhooks, but the webhooks came: slow, not lost
        (80, 40, 20, DelaySource.OBSERVED),
        (80, 20, 20, DelaySource.MISSED_MAJORITY),
    ],
)
def test_the_minimum_while_most_terminal_statuses_are_missed(
    polled_first: int, late: int, by_webhook: int, source: DelaySource
) -> None:
    delays = histogram([40.0] * 60)
    chosen = choose_first_delay(
        delays, polled_first=polled_first, by_webhook=by_webhook, late=late, bounds=BOUNDS
    )
    assert chosen.source is source
    if source is DelaySource.MISSED_MAJORITY:
        assert chosen.seconds == BOUNDS.min_s


@pytest.mark.parametrize(
    ("before", "source", "reported", "outcome", "verdict"),
    [
        ("pending", None, Status.SUCCEEDED, Outcome.APPLIED, WebhookVerdict(first_terminal=True)),
        ("succeeded", "poll", Status.SUCCEEDED, Outcome.UNCHANGED, WebhookVerdict(late=True)),
        # the webhook had told it already: a repeat, not late
        ("succeeded", "webhook", Status.SUCCEEDED, Outcome.UNCHANGED, WebhookVerdict()),
        ("succeeded", "poll", Status.PENDING, Outcome.STALE, WebhookVerdict(out_of_order=True)),
        ("pending", None, Status.PENDING, Outcome.APPLIED, WebhookVerdict()),
        # a late authorisation after a polled failure is a new terminal status, not late
        ("failed", "poll", Status.SUCCEEDED, Outcome.LATE_SUCCESS, WebhookVerdict()),
    ],
)
def test_a_webhook_is_judged_by_the_payment_before_it(
    before: str, source: str | None, reported: Status, outcome: Outcome, verdict: WebhookVerdict
) -> None:
    assert (
        judge_webhook(
            before_status=before, before_source=source, reported=reported, outcome=outcome
        )
        == verdict
    )


@pytest.mark.parametrize(
    ("before", "after", "source", "missed"),
    [
        ("pending", "succeeded", Source.POLL, True),
        ("pending", "pending", Source.POLL, False),
        ("pending", "failed", Source.WEBHOOK, False),
        ("failed", "succeeded", Source.POLL, False),  # not the first terminal status
    ],
)
def test_a_poll_misses_only_the_first_terminal_status(
    before: str, after: str, source: Source, missed: bool
) -> None:
    assert missed_by_poll(before_status=before, after_status=after, source=source) is missed


@pytest.mark.parametrize(("polled_first", "late", "lost"), [(10, 3, 7), (3, 5, 0)])
def test_missed_are_polled_first_whose_webhook_never_came(
    polled_first: int, late: int, lost: int
) -> None:
    assert missed(polled_first=polled_first, late=late) == lost


def test_slots_start_on_their_boundary() -> None:
    when = datetime(2026, 11, 28, 10, 7, 31, tzinfo=UTC)
    assert slot_start(when, 300) == datetime(2026, 11, 28, 10, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("env", "auto"),
    [
        ({"RECONCILER_POLL_FIRST_DELAY_S": "auto"}, {"simulator", "stripe", "razorpay"}),
        ({"RECONCILER_STRIPE_POLL_FIRST_DELAY_S": "AUTO"}, {"stripe"}),
        # a gateway's number overrides the common auto
        (
            {"RECONCILER_POLL_FIRST_DELAY_S": "auto", "RECONCILER_STRIPE_POLL_FIRST_DELAY_S": "10"},
            {"simulator", "razorpay"},
        ),
        ({"RECONCILER_POLL_FIRST_DELAY_S": "12"}, set()),
    ],
)
def test_auto_is_read_for_all_gateways_or_one(env: dict[str, str], auto: set[str]) -> None:
    settings = Settings.from_env(env)
    assert settings.first_delay_auto == frozenset(auto)
    assert Settings.from_env(settings.to_env()) == settings


def test_auto_waits_thirty_seconds_before_it_knows_anything() -> None:
    settings = Settings.from_env({"RECONCILER_POLL_FIRST_DELAY_S": "auto"})
    assert settings.policy("stripe").first_delay == 30.0


@pytest.mark.parametrize(
    "env",
    [
        {"RECONCILER_POLL_FIRST_DELAY_QUANTILE": "0"},
        {"RECONCILER_POLL_FIRST_DELAY_QUANTILE": "1.5"},
        {"RECONCILER_POLL_FIRST_DELAY_MIN_S": "60", "RECONCILER_POLL_FIRST_DELAY_MAX_S": "30"},
    ],
)
def test_bad_auto_bounds_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(env)
