"""Which changes to a payment give the merchant a notification."""

from __future__ import annotations

import pytest

from reconciler.domain.notify import EVENT_TYPES, events_for_change


@pytest.mark.parametrize(
    ("before", "after", "events"),
    [
        (("pending", "polling"), ("succeeded", "settled"), ("payment.succeeded",)),
        (("pending", "awaiting_webhook"), ("failed", "settled"), ("payment.failed",)),
        (("pending", "polling"), ("canceled", "settled"), ("payment.canceled",)),
        (("pending", "polling"), ("pending", "needs_review"), ("payment.needs_review",)),
        (("pending", "polling"), ("pending", "gave_up"), ("payment.gave_up",)),
        # A late success after a failure changes the status and flags the payment.
        (
            ("failed", "settled"),
            ("succeeded", "needs_review"),
            ("payment.succeeded", "payment.needs_review"),
        ),
        (("succeeded", "settled"), ("succeeded", "settled"), ()),  # a confirmation
        (("pending", "awaiting_webhook"), ("pending", "polling"), ()),  # schedule only
        (("pending", "gave_up"), ("pending", "polling"), ()),  # a revival is not news
        (("pending", "needs_review"), ("pending", "needs_review"), ()),  # still flagged
        (("succeeded", "needs_review"), ("succeeded", "settled"), ()),  # review resolved
    ],
)
def test_status_changes_and_moves_to_review_or_give_up_are_notified(
    before: tuple[str, str], after: tuple[str, str], events: tuple[str, ...]
) -> None:
    assert events_for_change(before[0], after[0], before[1], after[1]) == events


def test_the_event_types_are_the_contract_s() -> None:
    assert EVENT_TYPES == (
        "payment.succeeded",
        "payment.failed",
        "payment.canceled",
        "payment.needs_review",
        "payment.gave_up",
    )
