"""The one function through which every report changes a payment."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from reconciler.adapters import repository
from reconciler.adapters.models import Payment, PaymentEvent, WebhookInbox
from reconciler.domain.ownership import hidden
from reconciler.domain.payment import Reporting, apply
from reconciler.domain.status import Decision, Outcome, Report, Source, Status
from reconciler.domain.sync import KEEP, Keep
from reconciler.services.changes import snapshot_of_row, write_to_row
from reconciler.services.schedule import Scheduling

log = logging.getLogger(__name__)


def apply_report(
    session: Session,
    payment: Payment,
    report: Report,
    *,
    source: Source,
    now: datetime,
    sched: Scheduling,
    gateway_event_id: str | None = None,
    detail: dict[str, Any] | None = None,
    polled: bool = False,
    error: str | None | Keep = KEEP,
) -> Decision:
    """Judge a report on an ORM row: the one decision (`domain.payment.apply`), kept on it.

    The caller holds the payment's row lock and commits; the row, its timeline row and its
    notifications land in the same transaction. `polled` says it is a poll's answer (an
    attempt), `error` what `sync.last_error` shows after it.
    """
    event = Reporting(
        report=report,
        source=source,
        polled=polled,
        error=error,
        gateway_event_id=gateway_event_id,
        detail=detail or {},
    )
    return _judge_on_row(session, payment, event, now=now, sched=sched)


def _judge_on_row(
    session: Session, payment: Payment, event: Reporting, *, now: datetime, sched: Scheduling
) -> Decision:
    change = apply(snapshot_of_row(payment), event, sched.policy, now, sched.rand)
    write_to_row(session, payment, change, notify=sched.notify)
    assert change.decision is not None
    return change.decision


def webhook_reporting(
    report: Report, *, event_id: str, event_type: str, detail: Mapping[str, Any] | None
) -> Reporting:
    """A webhook's report, with its event id and type on the timeline.

    A webhook that says why the customer's attempt failed (a decline) shows it in
    `sync.last_error`, as a poll's answer would.
    """
    attempt_error = (detail or {}).get("attempt_error")
    return Reporting(
        report=report,
        source=Source.WEBHOOK,
        gateway_event_id=event_id,
        detail={**(detail or {}), "event_type": event_type},
        error=f"attempt failed: {attempt_error}" if isinstance(attempt_error, str) else KEEP,
    )


def record_event(
    session: Session,
    payment: Payment,
    *,
    source: Source,
    outcome: Outcome,
    from_status: Status,
    now: datetime,
    gateway_status: str | None = None,
    occurred_at: datetime | None = None,
    gateway_event_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one row to the payment's timeline."""
    session.add(
        PaymentEvent(
            payment_id=payment.id,
            recorded_at=now,
            source=source.value,
            outcome=outcome.value,
            from_status=from_status.value,
            to_status=payment.status,
            gateway_status=gateway_status,
            gateway_event_id=gateway_event_id,
            occurred_at=occurred_at,
            detail=detail or {},
        )
    )


def apply_orphans(session: Session, payment: Payment, *, now: datetime, sched: Scheduling) -> int:
    """Apply webhooks that arrived before the payment was known, in arrival order."""
    if payment.gateway_payment_id is None:
        return 0
    orphans = [
        entry
        for entry in repository.orphan_webhooks(
            session, payment.gateway, payment.gateway_payment_id, payment.gateway_account
        )
        if not hidden(payment, entry.report_owner)  # others' (and, on a shadow, untagged) stay
    ]
    for entry in orphans:
        apply_inbox_entry(session, payment, entry, now=now, sched=sched)
    return len(orphans)


def apply_inbox_entry(
    session: Session,
    payment: Payment,
    entry: WebhookInbox,
    *,
    now: datetime,
    sched: Scheduling,
) -> Decision | None:
    """Apply one stored webhook (an orphan) to its payment and mark it processed."""
    entry.payment_id = payment.id
    entry.processed_at = now
    if entry.status is None or entry.gateway_status is None:
        entry.outcome = "ignored"
        return None
    decision = apply_webhook(
        session,
        payment,
        Report(
            Status(entry.status),
            entry.gateway_status,
            entry.occurred_at,
            amount=entry.report_amount,
            currency=entry.report_currency,
            owner=entry.report_owner,
        ),
        event_id=entry.gateway_event_id,
        event_type=entry.event_type,
        detail=entry.detail,
        now=now,
        sched=sched,
    )
    entry.outcome = decision.outcome.value
    return decision


def apply_webhook(
    session: Session,
    payment: Payment,
    report: Report,
    *,
    event_id: str,
    event_type: str,
    detail: Mapping[str, Any] | None,
    now: datetime,
    sched: Scheduling,
) -> Decision:
    """Apply a webhook's report (see `webhook_reporting`) to an ORM row."""
    event = webhook_reporting(report, event_id=event_id, event_type=event_type, detail=detail)
    return _judge_on_row(session, payment, event, now=now, sched=sched)
