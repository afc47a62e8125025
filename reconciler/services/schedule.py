"""Run a sync event through the one decision and keep it on an ORM row.

The decision is `domain.payment.apply`; its writers are `services.changes` (Core, the
hot paths) and, for the few paths that hold an ORM row, `decide_and_store` here.
`tests/unit/test_sync_writers.py` fails when any other module assigns the sync columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import object_session

from reconciler.adapters.models import Payment
from reconciler.domain.delivery import DeliveryPolicy
from reconciler.domain.payment import Event, apply
from reconciler.domain.policy import PollPolicy, Random
from reconciler.domain.sync import SyncDecision, SyncEvent, decide_sync, initial_fields
from reconciler.services.changes import snapshot_of_row, write_to_row

SYNC_COLUMNS = (
    "sync_state",
    "next_poll_at",
    "poll_attempts",
    "last_delay_s",
    "last_polled_at",
    "give_up_at",
    "review_code",
    "review_reason",
    "last_error",
    "poll_failures",
)


@dataclass(frozen=True)
class Scheduling:
    """What deciding and storing a change needs besides the row and the event."""

    policy: PollPolicy  # the payment's gateway's
    rand: Random
    notify: DeliveryPolicy | None = None  # None: nobody is told (tools, some tests)


def new_sync(event: SyncEvent, *, sched: Scheduling, now: datetime) -> dict[str, object]:
    """Decide a new payment's sync columns, as keyword arguments for its row."""
    fields = initial_fields(sched.policy, created_at=now)
    decision = decide_sync(fields, event, sched.policy, now, sched.rand)
    return {
        "sync_state": decision.state.value,
        "next_poll_at": decision.next_poll_at,
        "poll_attempts": decision.attempts,
        "last_delay_s": decision.last_delay_s,
        "give_up_at": decision.give_up_at,
        "review_code": decision.review.value if decision.review else None,
        "review_reason": decision.review_detail,
        "last_error": decision.last_error,
        "poll_failures": decision.failures,
    }


def decide_and_store(
    payment: Payment, event: Event, *, sched: Scheduling, now: datetime
) -> SyncDecision:
    """Decide what `event` does to the payment and keep it on the row (with its rows)."""
    change = apply(snapshot_of_row(payment), event, sched.policy, now, sched.rand)
    session = object_session(payment)
    assert session is not None, "the payment must belong to a session"
    write_to_row(session, payment, change, notify=sched.notify)
    return change.sync
