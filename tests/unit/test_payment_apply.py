"""The one decision over a payment row: `domain.payment.apply`, with a moved clock."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.domain.notify import EventType
from reconciler.domain.payment import (
    MUTABLE_COLUMNS,
    Reporting,
    Snapshot,
    apply,
)
from reconciler.domain.policy import PollPolicy
from reconciler.domain.status import Outcome, Report, Source, Status
from reconciler.domain.sync import CallFailed, Held, NotKnown, Refreshed, Resolved

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
POLICY = PollPolicy(first_delay=30, base_delay=30, factor=2, max_delay=3600)


def half() -> float:
    return 0.5


def row(**changes: object) -> Snapshot:
    """A pending payment registered at T0, waiting for its webhook."""
    base = Snapshot(
        id="pay_1",
        merchant_id="m_1",
        merchant_reference="order-1",
        gateway="simulator",
        gateway_payment_id="sim_1",
        idempotency_key="idem_1",
        amount=4990,
        currency="EUR",
        status="pending",
        gateway_status="processing",
        status_source=None,
        created_at=T0,
        updated_at=T0,
        settled_at=None,
        last_event_at=None,
        review_code=None,
        review_reason=None,
        sync_state="awaiting_webhook",
        poll_attempts=0,
        poll_failures=0,
        next_poll_at=T0 + timedelta(seconds=30),
        last_polled_at=None,
        last_delay_s=None,
        last_error=None,
        give_up_at=T0 + timedelta(days=3),
        notification_sequence=0,
        version=1,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def report(status: Status, gateway_status: str, *, polled: bool = False) -> Reporting:
    return Reporting(
        report=Report(status, gateway_status, T0),
        source=Source.POLL if polled else Source.WEBHOOK,
        polled=polled,
        gateway_event_id=None if polled else "evt_1",
    )


def test_a_terminal_webhook_settles_the_payment_and_tells_the_merchant_once() -> None:
    now = T0 + timedelta(seconds=3)
    change = apply(row(), report(Status.SUCCEEDED, "captured"), POLICY, now, half)
    after = change.after
    assert (after.status, after.sync_state, after.next_poll_at) == ("succeeded", "settled", None)
    assert (after.settled_at, after.updated_at, after.status_source) == (now, now, "webhook")
    assert change.notify == (EventType.SUCCEEDED,)
    assert after.notification_sequence == 1
    assert change.entry is not None and change.entry.outcome is Outcome.APPLIED
    assert (change.entry.from_status, change.entry.to_status) == ("pending", "succeeded")


def test_a_pending_poll_answer_is_an_attempt_and_moves_the_schedule_on() -> None:
    now = T0 + timedelta(seconds=30)
    change = apply(row(), report(Status.PENDING, "processing", polled=True), POLICY, now, half)
    after = change.after
    assert (after.sync_state, after.poll_attempts, after.last_polled_at) == ("polling", 1, now)
    assert after.next_poll_at == now + timedelta(seconds=30 * 0.75)  # base 30 s, half jitter
    assert change.notify == ()
    assert change.entry is not None and change.entry.outcome is Outcome.UNCHANGED


def test_a_late_success_after_a_failure_is_applied_flagged_and_told_twice() -> None:
    failed = row(status="failed", gateway_status="failed", sync_state="settled", next_poll_at=None)
    change = apply(failed, report(Status.SUCCEEDED, "captured"), POLICY, T0, half)
    assert (change.after.status, change.after.sync_state) == ("succeeded", "needs_review")
    assert change.after.review_code == "late_success"
    assert change.notify == (EventType.SUCCEEDED, EventType.NEEDS_REVIEW)
    assert change.after.notification_sequence == 2


def test_a_conflicting_terminal_report_keeps_the_status_and_asks_for_review() -> None:
    succeeded = row(status="succeeded", sync_state="settled", next_poll_at=None)
    change = apply(succeeded, report(Status.FAILED, "failed"), POLICY, T0, half)
    assert (change.after.status, change.after.sync_state) == ("succeeded", "needs_review")
    assert change.entry is not None and change.entry.outcome is Outcome.CONFLICT
    assert change.notify == (EventType.NEEDS_REVIEW,)


def test_a_gateway_that_does_not_know_the_payment_puts_it_up_for_review_on_the_timeline() -> None:
    change = apply(row(), NotKnown(error="HTTP 404 from the gateway"), POLICY, T0, half)
    assert change.after.sync_state == "needs_review"
    assert change.entry is not None and change.entry.outcome is Outcome.ERROR
    assert change.notify == (EventType.NEEDS_REVIEW,)


@pytest.mark.parametrize(
    "event",
    [
        CallFailed(error="gateway timeout"),
        Held(until=T0 + timedelta(minutes=1), error="circuit open"),
        Refreshed(),
        Resolved(),
    ],
)
def test_sync_events_leave_no_timeline_row_and_tell_nobody(event: object) -> None:
    change = apply(row(), event, POLICY, T0, half)  # type: ignore[arg-type]
    assert change.entry is None
    assert change.notify == ()
    assert change.after.status == "pending"


STATUSES = st.sampled_from(list(Status))
EVENTS = st.one_of(
    st.builds(
        Reporting,
        report=st.builds(
            Report,
            status=STATUSES,
            gateway_status=st.sampled_from(["processing", "captured", "failed", "canceled"]),
            occurred_at=st.none() | st.just(T0),
        ),
        source=st.sampled_from(list(Source)),
        polled=st.booleans(),
    ),
    st.builds(CallFailed, error=st.just("gateway timeout")),
    st.builds(NotKnown, error=st.just("HTTP 404")),
    st.just(Refreshed()),
    st.just(Resolved()),
)


@given(status=STATUSES, event=EVENTS, seconds=st.integers(0, 400_000))
def test_a_change_writes_only_the_mutable_columns_and_never_the_identity(
    status: Status, event: object, seconds: int
) -> None:
    before = row(status=status.value, sync_state="settled" if status.terminal else "polling")
    change = apply(before, event, POLICY, T0 + timedelta(seconds=seconds), half)  # type: ignore[arg-type]
    moved = {
        f.name for f in fields(Snapshot) if getattr(before, f.name) != getattr(change.after, f.name)
    }
    assert moved <= set(MUTABLE_COLUMNS)
    assert change.after.notification_sequence == before.notification_sequence + len(change.notify)
    if change.after.status != before.status:
        assert change.notify[0].value == f"payment.{change.after.status}"
