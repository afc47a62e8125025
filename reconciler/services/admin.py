"""Operator use cases: find payments that need a person, report a status, clear a flag."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.adapters import repository
from reconciler.adapters.models import Payment
from reconciler.domain.status import Decision, Outcome, Report, Source, Status, SyncState
from reconciler.domain.sync import Resolved
from reconciler.services.context import Context
from reconciler.services.errors import NotFound, ValidationFailed
from reconciler.services.payments import page_start
from reconciler.services.payments import refresh as refresh_now
from reconciler.services.reports import apply_report, record_event
from reconciler.services.schedule import decide_and_store


def list_by_sync_state(
    ctx: Context, sync_state: str | None, limit: int, cursor: str | None
) -> tuple[Sequence[Payment], str | None]:
    """Page through every merchant's payments, optionally in one sync state."""
    if sync_state is not None and sync_state not in {s.value for s in SyncState}:
        raise ValidationFailed(
            f"sync_state must be one of: {', '.join(s.value for s in SyncState)}"
        )
    after = page_start(limit, cursor)
    with ctx.read() as session:
        page = repository.list_payments(
            session,
            None,
            status=None,
            gateway=None,
            limit=limit + 1,
            after=after,
            sync_state=sync_state,
        )
    more = len(page) > limit
    page = page[:limit]
    return page, repository.encode_cursor(page[-1]) if more else None


def show(ctx: Context, payment_id: str) -> Payment:
    with ctx.read() as session:
        payment = repository.any_payment(session, payment_id)
    if payment is None:
        raise NotFound(f"no payment {payment_id}")
    return payment


def refresh(ctx: Context, payment_id: str) -> Payment:
    """Poll any merchant's payment as soon as possible."""
    now = ctx.clock()
    with ctx.sessions.begin() as session:
        payment = repository.any_payment(session, payment_id, for_update=True)
        if payment is None:
            raise NotFound(f"no payment {payment_id}")
        refresh_now(ctx, payment, now)
    return payment


def report_status(
    ctx: Context, payment_id: str, status: str, gateway_status: str | None, note: str
) -> tuple[Payment, Decision]:
    """Apply an operator's report (e.g. read off the gateway's dashboard) by the usual rules."""
    try:
        reported = Status(status)
    except ValueError:
        raise ValidationFailed(
            f"status must be one of: {', '.join(s.value for s in Status)}"
        ) from None
    now = ctx.clock()
    with ctx.sessions.begin() as session:
        payment = repository.any_payment(session, payment_id, for_update=True)
        if payment is None:
            raise NotFound(f"no payment {payment_id}")
        decision = apply_report(
            session,
            payment,
            Report(reported, gateway_status or f"admin:{reported.value}"),
            source=Source.ADMIN,
            now=now,
            sched=ctx.scheduling(payment.gateway),
            detail={"note": note},
        )
    return payment, decision


def resolve_review(ctx: Context, payment_id: str, note: str) -> Payment:
    """Clear a review flag: settled if the status is terminal, else back on the schedule."""
    now = ctx.clock()
    with ctx.sessions.begin() as session:
        payment = repository.any_payment(session, payment_id, for_update=True)
        if payment is None:
            raise NotFound(f"no payment {payment_id}")
        if payment.sync_state != SyncState.NEEDS_REVIEW:
            raise ValidationFailed(f"payment {payment_id} is not flagged for review")
        review_reason = payment.review_reason
        decide_and_store(payment, Resolved(), sched=ctx.scheduling(payment.gateway), now=now)
        record_event(
            session,
            payment,
            source=Source.ADMIN,
            outcome=Outcome.RESOLVED,
            from_status=Status(payment.status),
            now=now,
            detail={"note": note, "review_reason": review_reason},
        )
        payment.updated_at = now
    return payment
