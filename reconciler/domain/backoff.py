"""The one backoff curve: how long to wait after the n-th try, with jitter, for every schedule.

Payment polls (`domain.policy`), merchant deliveries (`domain.delivery`), the short
retries after a failed call (`domain.sync`) and the engine's push-back of a row whose
target is busy all wait by these few functions, so one change here changes them all.

Jitter keeps a uniform share in [0.5, 1) of a delay: clients that failed together come
back spread over half the delay instead of in one burst (a thundering herd against a
gateway that has just recovered), while no wait is ever shorter than half its plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

Random = Callable[[], float]  # returns a float in [0, 1)

# A Retry-After beyond this is a broken or hostile header, not a plan: honouring it would
# push the next try past the end of the calendar (OverflowError) and wedge the row.
MAX_RETRY_AFTER = 7 * 24 * 3600.0


def grow(*, base: float, factor: float, max_delay: float, previous: float | None) -> float:
    """Return the next undithered delay: `min(max_delay, max(base, previous * factor))`."""
    grown = base if previous is None else previous * factor
    return min(max_delay, max(base, grown))


def jittered(delay: float, rand: Random) -> float:
    """Keep a uniform share in [0.5, 1) of `delay`."""
    return delay * (0.5 + 0.5 * rand())


def doubling(first: float, tries: int, ceiling: float) -> float:
    """Return `first`, `2 × first`, `4 × first`… for tries 1, 2, 3…, never past `ceiling`."""
    return min(ceiling, first * 2.0 ** min(max(tries, 1) - 1, 30))


def honouring(wait: float, retry_after: float | None) -> float:
    """Never wait less than the server's `Retry-After` (bounded by `MAX_RETRY_AFTER`)."""
    return max(wait, min(retry_after or 0.0, MAX_RETRY_AFTER))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Read a `Retry-After` header in either RFC 9110 form (seconds or HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():  # "²".isdigit() is True, float("²") raises
        return float(value)
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
