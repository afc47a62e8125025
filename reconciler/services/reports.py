"""The one function through which every report changes a payment."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from reconciler.adapters import repository
from reconciler.adapters.models import Payment, PaymentEvent, WebhookInbox
from reconciler.domain.status import Decision, Outcome, Report, Source, Status, decide
from reconciler.domain.sync import KEEP, Keep, Reported, ReviewReason
from reconciler.services.schedule import Scheduling, decide_and_store

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
    """Judge a report by the status rules, update the payment, and write its timeline row.

    The caller holds the payment's row lock and commits; the row and its event land in the
    same transaction. What the report does to the polling schedule is the sync decision's
    business (`domain.sync`): `polled` says it is a poll's answer (an attempt), `error`
    what `sync.last_error` shows after it.
    """
    before = Status(payment.status)
    decision = decide(before, payment.gateway_status, payment.last_event_at, report)
    if decision.moves:
        payment.status = decision.status.value
        payment.gateway_status = report.gateway_status
        payment.status_source = source.value
        payment.updated_at = now
        if report.occurred_at is not None and (
            payment.last_event_at is None or report.occurred_at > payment.last_event_at
        ):
            payment.last_event_at = report.occurred_at
        if decision.status.terminal and (
            payment.settled_at is None or decision.outcome is Outcome.LATE_SUCCESS
        ):
            payment.settled_at = now
    review = _review(decision)
    decide_and_store(
        payment,
        Reported(
            source=source,
            outcome=decision.outcome,
            status=Status(payment.status),
            review=review,
            review_detail=decision.reason if review else None,
            polled=polled,
            error=error,
        ),
        sched=sched,
        now=now,
        status_before=before.value,
    )
    if decision.moves or decision.flag_review:
        log.log(
            logging.WARNING if decision.flag_review else logging.INFO,
            "payment flagged for review" if decision.flag_review else "payment status reported",
            extra={
                "payment_id": payment.id,
                "gateway": payment.gateway,
                "source": source.value,
                "outcome": decision.outcome.value,
                "from_status": before.value,
                "to_status": payment.status,
                "gateway_status": report.gateway_status,
                **({"reason": decision.reason} if decision.reason else {}),
            },
        )
    record_event(
        session,
        payment,
        source=source,
        outcome=decision.outcome,
        from_status=before,
        gateway_status=report.gateway_status,
        occurred_at=report.occurred_at,
        now=now,
        gateway_event_id=gateway_event_id,
        detail={**(detail or {}), **({"reason": decision.reason} if decision.reason else {})},
    )
    return decision


def _review(decision: Decision) -> ReviewReason | None:
    if not decision.flag_review:
        return None
    if decision.outcome is Outcome.LATE_SUCCESS:
        return ReviewReason.LATE_SUCCESS
    return ReviewReason.CONFLICTING_REPORTS


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
    orphans = repository.orphan_webhooks(
        session, payment.gateway, payment.gateway_payment_id, payment.gateway_account
    )
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
        Report(Status(entry.status), entry.gateway_status, entry.occurred_at),
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
    """Apply a webhook's report, with its event id and type on the timeline.

    A webhook that says why the customer's attempt failed (a decline) shows it in
    `sync.last_error`, as a poll's answer would.
    """
    attempt_error = (detail or {}).get("attempt_error")
    return apply_report(
        session,
        payment,
        report,
        source=Source.WEBHOOK,
        now=now,
        sched=sched,
        gateway_event_id=event_id,
        detail={**(detail or {}), "event_type": event_type},
        error=f"attempt failed: {attempt_error}" if isinstance(attempt_error, str) else KEEP,
    )
