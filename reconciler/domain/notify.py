"""Which merchant notifications a change to a payment produces."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    SUCCEEDED = "payment.succeeded"
    FAILED = "payment.failed"
    CANCELED = "payment.canceled"
    NEEDS_REVIEW = "payment.needs_review"
    GAVE_UP = "payment.gave_up"


EVENT_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)

_ON_STATUS = {
    "succeeded": EventType.SUCCEEDED,
    "failed": EventType.FAILED,
    "canceled": EventType.CANCELED,
}
_ON_SYNC_STATE = {
    "needs_review": EventType.NEEDS_REVIEW,
    "gave_up": EventType.GAVE_UP,
}


def events_for_change(
    status_before: str, status_after: str, sync_before: str, sync_after: str
) -> tuple[EventType, ...]:
    """Name the events a change produces, status event first (none when nothing moved).

    A status change gives `payment.<status>`; `sync.state` becoming `needs_review` or
    `gave_up` gives its own event. One change can give both: a late success after a
    failure moves the status to `succeeded` and flags the payment for review.
    """
    events: list[EventType] = []
    if status_after != status_before and status_after in _ON_STATUS:
        events.append(_ON_STATUS[status_after])
    if sync_after != sync_before and sync_after in _ON_SYNC_STATE:
        events.append(_ON_SYNC_STATE[sync_after])
    return tuple(events)
