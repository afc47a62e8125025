"""Store what `domain.payment.apply` decided: the row, its timeline row, its notifications.

Two writers share the rows they append. `store` is the hot path in Core (the engine's
completions of a whole tick, a webhook): one UPDATE per change (one per batch on
PostgreSQL) that checks the row is still as read and still leased, one INSERT for the
batch's timeline rows, one for its notification events, and one INSERT … SELECT per
event for its deliveries. `write_to_row` is for the few paths that hold an ORM row
(registration, creation, operators): it sets the row's attributes and adds the same rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from reconciler.adapters import repository, wakeups
from reconciler.adapters.models import NotificationEvent, Payment, PaymentEvent
from reconciler.adapters.repository.changes import Stored
from reconciler.domain.delivery import DeliveryPolicy, first_attempt_at, give_up_deadline
from reconciler.domain.payment import MUTABLE_COLUMNS, SNAPSHOT_COLUMNS, Change, Entry, Snapshot
from reconciler.domain.times import rfc3339
from reconciler.services.ids import new_id
from reconciler.services.resources import payment_resource
from reconciler.services.work import DELIVERIES, POLLS

log = logging.getLogger(__name__)


def store(
    session: Session, items: Sequence[Stored], *, notify: DeliveryPolicy | None
) -> list[bool]:
    """Write a batch of changes in the caller's transaction; say which rows were written.

    A change whose row moved on since it was read (another writer, a lost lease) is not
    written, and neither are its timeline row and notifications.
    """
    written = repository.store_changes(session, items)
    timeline: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for item, done in zip(items, written, strict=True):
        if not done:
            continue
        change = item.change
        if change.entry is not None:
            timeline.append(_timeline_row(change.before.id, change.entry))
        if notify is not None:
            events.extend(_event_rows(change))
        wakeups.note_due(session, change.after.next_poll_at, POLLS)
        _log(change)
    repository.append_timeline(session, timeline)
    _record_events(session, events, notify)
    return written


def write_to_row(
    session: Session, payment: Payment, change: Change, *, notify: DeliveryPolicy | None
) -> None:
    """Set a change on an ORM row and add its timeline row and notifications to the session."""
    if repository.claimed(change) and payment.gateway_payment_id is not None:
        repository.shadow_others(session, payment, payment.gateway_payment_id)  # first the other
    for name in MUTABLE_COLUMNS:
        setattr(payment, name, getattr(change.after, name))
    if change.entry is not None:
        session.add(PaymentEvent(**_timeline_row(payment.id, change.entry)))
    wakeups.note_due(session, change.after.next_poll_at, POLLS)
    _log(change)
    events = _event_rows(change) if notify is not None else []
    if events:
        session.add_all(NotificationEvent(**row) for row in events)
        session.flush()
        _record_events(session, events, notify, inserted=True)


def append_entry(session: Session, payment_id: str, entry: Entry) -> None:
    """Put one row on a payment's timeline that changes nothing (a duplicate, a lost answer)."""
    repository.append_timeline(session, [_timeline_row(payment_id, entry)])


def snapshot_of_row(payment: Payment) -> Snapshot:
    """Read an ORM row as a snapshot."""
    return repository.snapshot_of({name: getattr(payment, name) for name in SNAPSHOT_COLUMNS})


def _timeline_row(payment_id: str, entry: Entry) -> dict[str, Any]:
    return {
        "payment_id": payment_id,
        "recorded_at": entry.recorded_at,
        "source": entry.source.value,
        "outcome": entry.outcome.value,
        "from_status": entry.from_status,
        "to_status": entry.to_status,
        "gateway_status": entry.gateway_status,
        "gateway_event_id": entry.gateway_event_id,
        "occurred_at": entry.occurred_at,
        "detail": dict(entry.detail),
    }


def _event_rows(change: Change) -> list[dict[str, Any]]:
    if not change.notify:
        return []
    now = change.after.updated_at
    resource = payment_resource(change.after)
    rows = []
    for offset, event_type in enumerate(change.notify, start=1):
        event_id = new_id("evt")
        sequence = change.before.notification_sequence + offset
        rows.append(
            {
                "id": event_id,
                "payment_id": change.after.id,
                "merchant_id": change.after.merchant_id,
                "type": event_type.value,
                "sequence": sequence,
                "created_at": now,
                "payload": {
                    "id": event_id,
                    "type": event_type.value,
                    "created_at": rfc3339(now),
                    "sequence": sequence,
                    "data": resource,
                },
            }
        )
    return rows


def _record_events(
    session: Session,
    events: list[dict[str, Any]],
    notify: DeliveryPolicy | None,
    *,
    inserted: bool = False,
) -> None:
    if not events or notify is None:
        return
    if not inserted:
        repository.insert_events(session, events)
    for event in events:
        now: datetime = event["created_at"]
        repository.insert_deliveries_for(
            session,
            event_id=event["id"],
            event_type=event["type"],
            merchant_id=event["merchant_id"],
            now=now,
            first_attempt_at=first_attempt_at(notify, now),
            give_up_at=give_up_deadline(notify, now),
        )
        log.info(
            "payment event recorded",
            extra={
                "event_id": event["id"],
                "payment_id": event["payment_id"],
                "type": event["type"],
            },
        )
    wakeups.note_due(session, first_attempt_at(notify, events[0]["created_at"]), DELIVERIES)


def _log(change: Change) -> None:
    decision = change.decision
    if change.sync.gave_up and change.before.sync_state != change.after.sync_state:
        log.warning(
            "gave up polling",
            extra={"payment_id": change.after.id, "gateway": change.after.gateway},
        )
    if decision is None or not (decision.moves or decision.flag_review):
        return
    entry = change.entry
    log.log(
        logging.WARNING if decision.flag_review else logging.INFO,
        "payment flagged for review" if decision.flag_review else "payment status reported",
        extra={
            "payment_id": change.after.id,
            "gateway": change.after.gateway,
            "source": entry.source.value if entry else "",
            "outcome": decision.outcome.value,
            "from_status": change.before.status,
            "to_status": change.after.status,
            "gateway_status": entry.gateway_status if entry else None,
            **({"reason": decision.reason} if decision.reason else {}),
        },
    )
