"""Store the sync decision on a payment row: the only code that writes the sync columns.

`tests/unit/test_sync_writers.py` fails when any other module assigns them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session, object_session

from reconciler.adapters import wakeups
from reconciler.adapters.models import Payment
from reconciler.domain.policy import PollPolicy, Random
from reconciler.domain.status import Status, SyncState
from reconciler.domain.sync import (
    ReviewReason,
    SyncDecision,
    SyncEvent,
    SyncFields,
    decide_sync,
    initial_fields,
)

log = logging.getLogger(__name__)

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


def sync_fields(payment: Payment) -> SyncFields:
    """Read a payment's sync columns for the decision."""
    return SyncFields(
        state=SyncState(payment.sync_state),
        status=Status(payment.status),
        attempts=payment.poll_attempts or 0,
        next_poll_at=payment.next_poll_at,
        last_polled_at=payment.last_polled_at,
        last_delay_s=payment.last_delay_s,
        give_up_at=payment.give_up_at,
        created_at=payment.created_at,
        review=ReviewReason(payment.review_code) if payment.review_code else None,
        review_detail=payment.review_reason,
        last_error=payment.last_error,
        failures=payment.poll_failures or 0,
    )


class Outbox(Protocol):
    """Records the merchant notifications a change produces (see services.notifications)."""

    def record_change(
        self,
        session: Session,
        payment: Payment,
        *,
        status_before: str,
        sync_before: str,
        now: datetime,
    ) -> None: ...


@dataclass(frozen=True)
class Scheduling:
    """What storing a sync decision needs besides the row and the event."""

    policy: PollPolicy  # the payment's gateway's
    rand: Random
    outbox: Outbox | None = None  # None: nobody is told (tools, some tests)


def new_sync(event: SyncEvent, *, sched: Scheduling, now: datetime) -> dict[str, object]:
    """Decide a new payment's sync columns, as keyword arguments for its row."""
    fields = initial_fields(sched.policy, created_at=now)
    return _columns(decide_sync(fields, event, sched.policy, now, sched.rand))


def decide_and_store(
    payment: Payment,
    event: SyncEvent,
    *,
    sched: Scheduling,
    now: datetime,
    status_before: str | None = None,
) -> SyncDecision:
    """Decide what `event` does to the payment's schedule, store it, and tell the outbox.

    `status_before` is the status before the report that led here (when one did), so a
    status change and a move to `needs_review`/`gave_up` each record their event in this
    same transaction.
    """
    decision = decide_sync(sync_fields(payment), event, sched.policy, now, sched.rand)
    before = payment.sync_state
    for column, value in _columns(decision).items():
        setattr(payment, column, value)
    if decision.polled_at is not None:
        payment.last_polled_at = decision.polled_at
    session = object_session(payment)
    if session is not None:
        wakeups.note_due(session, decision.next_poll_at)
        if sched.outbox is not None:
            sched.outbox.record_change(
                session,
                payment,
                status_before=status_before or payment.status,
                sync_before=before,
                now=now,
            )
    if decision.state != before:
        payment.updated_at = now
        if decision.gave_up:
            log.warning(
                "gave up polling", extra={"payment_id": payment.id, "gateway": payment.gateway}
            )
    return decision


def _columns(decision: SyncDecision) -> dict[str, object]:
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
