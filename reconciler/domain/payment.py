"""One decision over a payment row: what a report or a sync event does to it, in full.

`apply(snapshot, event, policy, now, rand)` is the one place where a payment changes. It
judges a report by the status rules (`domain.status.decide`), decides the schedule
(`domain.sync.decide_sync`), names the merchant notifications the change produces
(`domain.notify.events_for_change`) and the timeline row to append, and returns them
as one `Change`. Services store a change; they decide nothing.

The snapshot is a frozen copy of the row: the columns a sweep's claim returns for a
poll, the row locked by a webhook's statement for a webhook. Its field names are the
table's column names, so a stored row becomes a snapshot with `Snapshot(**row)` and a
change is written back column for column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from reconciler.domain.amounts import mismatch
from reconciler.domain.notify import EventType, events_for_change
from reconciler.domain.ownership import ABANDONED, abandon_at, abandoned, claims, hidden
from reconciler.domain.policy import PollPolicy, Random
from reconciler.domain.status import Decision, Outcome, Report, Source, Status, SyncState, decide
from reconciler.domain.sync import (
    KEEP,
    CallFailed,
    Created,
    Held,
    Keep,
    NotKnown,
    Refreshed,
    Reported,
    Resolved,
    ReviewReason,
    SyncDecision,
    SyncFields,
    decide_sync,
)


@dataclass(frozen=True)
class Snapshot:
    """A payment row as it was read, column for column."""

    id: str
    merchant_id: str
    merchant_reference: str
    gateway: str
    gateway_payment_id: str | None
    idempotency_key: str
    amount: int
    currency: str
    status: str
    gateway_status: str | None
    status_source: str | None
    created_at: datetime
    updated_at: datetime
    settled_at: datetime | None
    last_event_at: datetime | None
    review_code: str | None
    review_reason: str | None
    sync_state: str
    poll_attempts: int
    poll_failures: int
    next_poll_at: datetime | None
    last_polled_at: datetime | None
    last_delay_s: float | None
    last_error: str | None
    give_up_at: datetime
    notification_sequence: int
    version: int
    gateway_account: str = "default"  # `gwa_…`, or the environment's `default` account
    cancel_reason: str | None = None  # "abandoned": nobody paid within `abandon_after`
    shadow: bool = False  # another merchant tracks this gateway payment: show it nothing

    @property
    def creating(self) -> bool:
        """Whether the gateway has still to create the payment (no gateway id yet)."""
        return self.gateway_payment_id is None

    def sync_fields(self) -> SyncFields:
        """The sync columns, as the schedule's decision reads them."""
        return SyncFields(
            state=SyncState(self.sync_state),
            status=Status(self.status),
            attempts=self.poll_attempts or 0,
            next_poll_at=self.next_poll_at,
            last_polled_at=self.last_polled_at,
            last_delay_s=self.last_delay_s,
            give_up_at=self.give_up_at,
            created_at=self.created_at,
            review=ReviewReason(self.review_code) if self.review_code else None,
            review_detail=self.review_reason,
            last_error=self.last_error,
            failures=self.poll_failures or 0,
        )


SNAPSHOT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Snapshot))
# What a change may write: everything but the row's identity and registration.
MUTABLE_COLUMNS: tuple[str, ...] = (
    "status",
    "gateway_status",
    "status_source",
    "updated_at",
    "settled_at",
    "last_event_at",
    "review_code",
    "review_reason",
    "sync_state",
    "poll_attempts",
    "poll_failures",
    "next_poll_at",
    "last_polled_at",
    "last_delay_s",
    "last_error",
    "give_up_at",
    "notification_sequence",
    "cancel_reason",
    "shadow",
)


@dataclass(frozen=True)
class Reporting:
    """A report to judge: a webhook's, a poll's answer, an operator's."""

    report: Report
    source: Source
    polled: bool = False  # a poll's answer: an attempt, and the schedule moves on
    error: str | None | Keep = KEEP  # what `sync.last_error` shows after it
    gateway_event_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


Event = Reporting | Created | CallFailed | NotKnown | Held | Refreshed | Resolved

NOT_KNOWN = "the gateway does not know this payment"


@dataclass(frozen=True)
class Entry:
    """One row for the payment's timeline."""

    source: Source
    outcome: Outcome
    from_status: str
    to_status: str
    recorded_at: datetime
    gateway_status: str | None = None
    occurred_at: datetime | None = None
    gateway_event_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """What one event does to a payment: the row after it, its timeline row, its events."""

    before: Snapshot
    after: Snapshot
    sync: SyncDecision
    decision: Decision | None = None  # the status rules' verdict, when a report was judged
    entry: Entry | None = None
    notify: tuple[EventType, ...] = ()

    @property
    def columns(self) -> dict[str, Any]:
        """Every column a change may write, with its value after the change."""
        return {name: getattr(self.after, name) for name in MUTABLE_COLUMNS}

    @property
    def moved(self) -> bool:
        """Whether the row differs from what was read."""
        return self.after != self.before


def apply(
    snapshot: Snapshot, event: Event, policy: PollPolicy, now: datetime, rand: Random
) -> Change:
    """Decide everything `event` does to the payment: row, schedule, timeline, notifications."""
    if isinstance(event, Reporting):
        return _judge(snapshot, event, policy, now, rand)
    sync = decide_sync(snapshot.sync_fields(), event, policy, now, rand)
    after = _after(snapshot, {}, sync, now)
    entry = _unknown_entry(snapshot, Source.POLL, now) if isinstance(event, NotKnown) else None
    return _finish(snapshot, after, sync, None, entry)


def _judge(
    snapshot: Snapshot, event: Reporting, policy: PollPolicy, now: datetime, rand: Random
) -> Change:
    report = event.report
    if event.source is not Source.ADMIN and hidden(snapshot, report.owner):
        # Nothing of another merchant's payment is shown: as if the gateway did not know it.
        # (An operator's report is the operator's call.)
        return _not_known(snapshot, event.source, policy, now, rand)
    change = _judged(snapshot, event, policy, now, rand)
    if claims(snapshot, report.owner):
        # Tagged with this row's merchant: this row tracks it now, the other one shadows.
        change = replace(change, after=replace(change.after, shadow=False))
    return change


def _judged(
    snapshot: Snapshot, event: Reporting, policy: PollPolicy, now: datetime, rand: Random
) -> Change:
    report = event.report
    words = mismatch(snapshot.amount, snapshot.currency, report.amount, report.currency)
    if words is not None:
        return _mismatched(snapshot, event, words, policy, now, rand)
    if abandoned(snapshot.status, snapshot.created_at, report, policy, now):
        report = replace(report, status=Status.CANCELED, cancel_reason=ABANDONED)
        event = replace(
            event,
            report=report,
            detail={**event.detail, "cancel_reason": ABANDONED},
        )
    before = Status(snapshot.status)
    decision = decide(before, snapshot.gateway_status, snapshot.last_event_at, report)
    moved: dict[str, Any] = {}
    if decision.moves:
        last_event_at = snapshot.last_event_at
        if report.occurred_at is not None and (
            last_event_at is None or report.occurred_at > last_event_at
        ):
            last_event_at = report.occurred_at
        settled_at = snapshot.settled_at
        if decision.status.terminal and (
            settled_at is None or decision.outcome is Outcome.LATE_SUCCESS
        ):
            settled_at = now
        moved = {
            "status": decision.status.value,
            "gateway_status": report.gateway_status,
            "status_source": event.source.value,
            "updated_at": now,
            "last_event_at": last_event_at,
            "settled_at": settled_at,
            "cancel_reason": (
                ABANDONED
                if decision.status is Status.CANCELED and report.cancel_reason == ABANDONED
                else None
            ),
        }
    review = _review(decision)
    fields_now = snapshot.sync_fields()
    if decision.status.value != snapshot.status:
        fields_now = replace(fields_now, status=decision.status)
    sync = decide_sync(
        fields_now,
        Reported(
            source=event.source,
            outcome=decision.outcome,
            status=decision.status if decision.moves else Status(snapshot.status),
            review=review,
            review_detail=decision.reason if review else None,
            polled=event.polled,
            error=event.error,
        ),
        policy,
        now,
        rand,
    )
    if report.waiting and sync.next_poll_at is not None:
        # Polled when it is to be abandoned, not a backoff step later.
        deadline = max(now, abandon_at(snapshot.created_at, policy))
        if sync.next_poll_at > deadline:
            sync = replace(sync, next_poll_at=deadline)
    after = _after(snapshot, moved, sync, now)
    reason = {"reason": decision.reason} if decision.reason else {}
    entry = Entry(
        source=event.source,
        outcome=decision.outcome,
        from_status=before.value,
        to_status=decision.status.value,
        recorded_at=now,
        gateway_status=report.gateway_status,
        occurred_at=report.occurred_at,
        gateway_event_id=event.gateway_event_id,
        detail={**event.detail, **reason},
    )
    return _finish(snapshot, after, sync, decision, entry)


def _not_known(
    snapshot: Snapshot, source: Source, policy: PollPolicy, now: datetime, rand: Random
) -> Change:
    sync = decide_sync(snapshot.sync_fields(), NotKnown(NOT_KNOWN), policy, now, rand)
    after = _after(snapshot, {}, sync, now)
    entry = _unknown_entry(snapshot, source, now)
    return _finish(snapshot, after, sync, Decision(Outcome.ERROR, Status(snapshot.status)), entry)


def _unknown_entry(snapshot: Snapshot, source: Source, now: datetime) -> Entry:
    """The timeline row of an answer that the gateway does not know the payment."""
    return Entry(
        source=source,
        outcome=Outcome.ERROR,
        from_status=snapshot.status,
        to_status=snapshot.status,
        recorded_at=now,
        detail={"error": NOT_KNOWN},
    )


def _mismatched(
    snapshot: Snapshot,
    event: Reporting,
    words: str,
    policy: PollPolicy,
    now: datetime,
    rand: Random,
) -> Change:
    """An amount or currency that differs never settles: the status stays, a person looks."""
    status = Status(snapshot.status)
    decision = Decision(Outcome.AMOUNT_MISMATCH, status, flag_review=True, reason=words)
    sync = decide_sync(
        snapshot.sync_fields(),
        Reported(
            source=event.source,
            outcome=Outcome.AMOUNT_MISMATCH,
            status=status,
            review=ReviewReason.AMOUNT_MISMATCH,
            review_detail=words,
            polled=event.polled,
            error=words,
        ),
        policy,
        now,
        rand,
    )
    after = _after(snapshot, {}, sync, now)
    entry = Entry(
        source=event.source,
        outcome=Outcome.AMOUNT_MISMATCH,
        from_status=snapshot.status,
        to_status=snapshot.status,
        recorded_at=now,
        gateway_status=event.report.gateway_status,
        occurred_at=event.report.occurred_at,
        gateway_event_id=event.gateway_event_id,
        detail={**event.detail, "reason": words},
    )
    return _finish(snapshot, after, sync, decision, entry)


def _review(decision: Decision) -> ReviewReason | None:
    if not decision.flag_review:
        return None
    if decision.outcome is Outcome.LATE_SUCCESS:
        return ReviewReason.LATE_SUCCESS
    return ReviewReason.CONFLICTING_REPORTS


def _after(
    snapshot: Snapshot, moved: dict[str, Any], sync: SyncDecision, now: datetime
) -> dict[str, Any]:
    """The columns that change: the report's (`moved`) and the schedule's."""
    after = {
        **moved,
        "sync_state": sync.state.value,
        "next_poll_at": sync.next_poll_at,
        "poll_attempts": sync.attempts,
        "last_delay_s": sync.last_delay_s,
        "give_up_at": sync.give_up_at,
        "review_code": sync.review.value if sync.review else None,
        "review_reason": sync.review_detail,
        "last_error": sync.last_error,
        "poll_failures": sync.failures,
        "last_polled_at": sync.polled_at or snapshot.last_polled_at,
    }
    if after["sync_state"] != snapshot.sync_state:
        after["updated_at"] = now
    return after


def _finish(
    before: Snapshot,
    after: dict[str, Any],
    sync: SyncDecision,
    decision: Decision | None,
    entry: Entry | None,
) -> Change:
    status = after.get("status", before.status)
    notify = events_for_change(before.status, status, before.sync_state, after["sync_state"])
    if notify:
        after["notification_sequence"] = before.notification_sequence + len(notify)
    return Change(
        before=before,
        after=replace(before, **after),
        sync=sync,
        decision=decision,
        entry=entry,
        notify=notify,
    )
