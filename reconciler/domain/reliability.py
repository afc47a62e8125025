"""Webhook reliability, pure: the delay histogram, its quantiles, and the grace period.

Delays (gateway's event time -> received) are counted in fixed geometric buckets: bucket
0 holds [0, 0.1 s], bucket i holds (0.1 * 1.15**(i-1), 0.1 * 1.15**i] s, the last bucket
everything longer. A quantile read back from the buckets is off by at most one bucket's
width, 15 %, which is why a table of counts can stand in for the samples themselves.

`choose_first_delay` turns a day of such counts into the first poll's delay of a gateway
account whose `RECONCILER_POLL_FIRST_DELAY_S` is `auto`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple

from reconciler.domain.status import Outcome, Source, Status

SMALLEST_S = 0.1
RATIO = 1.15
BUCKETS = 100  # 0.1 * 1.15**98 is about 9 days: the last bucket is open-ended
_LOG_RATIO = math.log(RATIO)

Histogram = Mapping[int, int]  # bucket -> count


def bucket_of(delay_s: float) -> int:
    """Return the bucket a delay falls in (negative delays, clock skew, count as 0)."""
    if not delay_s > SMALLEST_S:  # also NaN
        return 0
    index = math.ceil(math.log(delay_s / SMALLEST_S) / _LOG_RATIO - 1e-9)
    return min(max(index, 1), BUCKETS - 1)


def bucket_bounds(index: int) -> tuple[float, float]:
    """Return the delays (low, high] a bucket holds, in seconds."""
    if index <= 0:
        return 0.0, SMALLEST_S
    return SMALLEST_S * RATIO ** (index - 1), SMALLEST_S * RATIO**index


def total(histogram: Histogram) -> int:
    """Count the samples in a histogram."""
    return sum(histogram.values())


def quantile(histogram: Histogram, q: float) -> float | None:
    """Return the `q` quantile of the delays counted (None without samples).

    Within the bucket where the quantile falls, the value is interpolated geometrically,
    as the buckets themselves grow.
    """
    n = total(histogram)
    if n <= 0:
        return None
    rank = min(max(q, 0.0), 1.0) * n
    seen = 0
    for index in sorted(histogram):
        count = histogram[index]
        if count <= 0:
            continue
        if seen + count >= rank:
            low, high = bucket_bounds(index)
            share = (rank - seen) / count
            if index == 0:
                return high * share
            return float(low * (high / low) ** share)
        seen += count
    return bucket_bounds(max(histogram))[1]


def merge(histograms: Iterable[Histogram]) -> dict[int, int]:
    """Add histograms bucket by bucket."""
    merged: dict[int, int] = {}
    for histogram in histograms:
        for index, count in histogram.items():
            merged[index] = merged.get(index, 0) + count
    return merged


class DelaySource(StrEnum):
    """Why a payment's first poll waits as long as it does."""

    FIXED = "fixed"  # RECONCILER_POLL_FIRST_DELAY_S is a number
    FALLBACK = "fallback"  # auto, but fewer terminal webhooks in 24 h than it needs
    MISSED_MAJORITY = "missed_majority"  # auto: most terminal statuses came by poll
    OBSERVED = "observed"  # auto: the observed quantile, within the bounds


class FirstDelay(NamedTuple):
    """A first poll's delay and the reason for it."""

    seconds: float
    source: DelaySource


@dataclass(frozen=True)
class AutoBounds:
    """How `auto` reads the observed delays (RECONCILER_POLL_FIRST_DELAY_*)."""

    quantile: float = 0.95
    min_s: float = 5.0
    max_s: float = 600.0
    fallback_s: float = 30.0
    min_samples: int = 50

    def __post_init__(self) -> None:
        if not 0.0 < self.quantile <= 1.0:
            raise ValueError("the first delay's quantile must be in (0, 1]")
        if not 0.0 <= self.min_s <= self.max_s:
            raise ValueError("need 0 <= the first delay's minimum <= its maximum")


def missed(*, polled_first: int, late: int) -> int:
    """Count the terminal statuses whose webhook never came: found by a poll, and not late.

    A webhook that comes after the poll found its status is counted late, not missed, so
    the missed rate estimates the share of webhooks lost, whatever the first delay.
    """
    return max(0, polled_first - late)


def choose_first_delay(
    terminal_delays: Histogram, *, polled_first: int, by_webhook: int, late: int, bounds: AutoBounds
) -> FirstDelay:
    """Choose an account's first poll delay from a day of its terminal webhooks.

    `terminal_delays` counts the delays of webhooks reporting a terminal status (late
    ones included: a webhook the poll beat still shows how long webhooks take);
    `polled_first` counts terminal statuses a poll found first, `by_webhook` those a
    webhook reported first, `late` the webhooks that came after a poll's find. While
    more than half of the terminal statuses are missed (once there are enough of them to
    say so), waiting for webhooks is waiting for nothing: the minimum. With fewer than
    `min_samples` delays: the fallback. Otherwise the quantile, within the bounds.
    """
    settled = polled_first + by_webhook
    lost = missed(polled_first=polled_first, late=late)
    if settled >= bounds.min_samples and 2 * lost > settled:
        return FirstDelay(bounds.min_s, DelaySource.MISSED_MAJORITY)
    if total(terminal_delays) < bounds.min_samples:
        return FirstDelay(bounds.fallback_s, DelaySource.FALLBACK)
    observed = quantile(terminal_delays, bounds.quantile) or bounds.fallback_s
    return FirstDelay(min(max(observed, bounds.min_s), bounds.max_s), DelaySource.OBSERVED)


@dataclass(frozen=True)
class WebhookVerdict:
    """What one (first) delivery of a webhook says about the gateway's webhooks."""

    out_of_order: bool = False  # stale: older than what was applied, or pending after terminal
    first_terminal: bool = False  # it is the first to report the payment's terminal status
    late: bool = False  # a poll had found this terminal status first


def judge_webhook(
    *,
    before_status: str,
    before_source: str | None,
    reported: Status,
    outcome: Outcome,
) -> WebhookVerdict:
    """Judge a webhook by the payment as it was before it and the status rules' outcome."""
    if outcome is Outcome.STALE:
        return WebhookVerdict(out_of_order=True)
    if not reported.terminal:
        return WebhookVerdict()
    if Status(before_status) is Status.PENDING and outcome in (
        Outcome.APPLIED,
        Outcome.LATE_SUCCESS,
    ):
        return WebhookVerdict(first_terminal=True)
    late = before_status == reported.value and before_source == Source.POLL.value
    return WebhookVerdict(late=late)


def missed_by_poll(*, before_status: str, after_status: str, source: Source) -> bool:
    """Say whether a poll found a terminal status no webhook had reported."""
    return (
        source is Source.POLL
        and Status(before_status) is Status.PENDING
        and Status(after_status).terminal
    )


def slot_start(when: datetime, seconds: int) -> datetime:
    """Return the start of the `seconds`-long slot (aligned to the epoch) holding `when`."""
    stamp = int(when.timestamp())
    return datetime.fromtimestamp(stamp - stamp % seconds, tz=UTC)
