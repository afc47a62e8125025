"""Operator use cases: find payments that need a person, report a status, clear a flag.

A report or a resolution answers one shape (`ReviewAction`): what the report did, whether
the review is closed, and the payment after it. A report with a terminal status also
closes the review (the operator read the answer off the gateway), unless asked not to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from reconciler.adapters import repository
from reconciler.adapters.models import Payment
from reconciler.domain.status import Outcome, Report, Source, Status, SyncState
from reconciler.domain.sync import Resolved, ReviewReason
from reconciler.services.context import Context
from reconciler.services.errors import Conflict, NotFound, ValidationFailed
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


@dataclass(frozen=True)
class ReviewAction:
    """What an operator's report or resolution did, and the payment after it."""

    outcome: Outcome
    resolved: bool  # the review flag was cleared by this action
    payment: Payment


def report_status(
    ctx: Context,
    payment_id: str,
    status: str,
    gateway_status: str | None,
    note: str,
    *,
    resolve: bool = True,
) -> ReviewAction:
    """Apply an operator's report (e.g. read off the gateway's dashboard) by the usual rules.

    A terminal status reported on a payment flagged for review also clears the flag in the
    same transaction, when the rules took it (`resolve=False` keeps the flag).
    """
    try:
        reported = Status(status)
    except ValueError:
        raise ValidationFailed(
            f"status must be one of: {', '.join(s.value for s in Status)}"
        ) from None
    now = ctx.clock()
    with ctx.sessions.begin() as session:
        payment = _locked(session, payment_id)
        decision = apply_report(
            session,
            payment,
            Report(reported, gateway_status or f"admin:{reported.value}"),
            source=Source.ADMIN,
            now=now,
            sched=ctx.scheduling(payment.gateway),
            detail={"note": note},
        )
        # Only when the status now is the one reported: a `failed` the rules refused on a
        # captured payment leaves the conflict for a person to settle.
        resolved = (
            resolve
            and reported.terminal
            and payment.sync_state == SyncState.NEEDS_REVIEW
            and payment.status == reported
        )
        if resolved:
            _resolve(ctx, session, payment, note, now)
    return ReviewAction(decision.outcome, resolved, payment)


def resolve_review(ctx: Context, payment_id: str, note: str) -> ReviewAction:
    """Clear a review flag: settled if the status is terminal, else back on the schedule.

    A pending payment the gateway does not know would only be flagged again by its next
    poll: it is refused, with the actions that close it (settle it, or refresh it once
    its gateway id is right).
    """
    now = ctx.clock()
    with ctx.sessions.begin() as session:
        payment = _locked(session, payment_id)
        if payment.sync_state != SyncState.NEEDS_REVIEW:
            raise ValidationFailed(f"payment {payment_id} is not flagged for review")
        if (
            payment.review_code == ReviewReason.UNKNOWN_TO_GATEWAY
            and not Status(payment.status).terminal
        ):
            raise Conflict(
                f"the gateway does not know payment {payment_id}: its next poll would flag it "
                "again. Settle it as canceled or failed (report that status with a note), or "
                "refresh it if the gateway knows it now"
            )
        _resolve(ctx, session, payment, note, now)
    return ReviewAction(Outcome.RESOLVED, True, payment)


def _locked(session: Session, payment_id: str) -> Payment:
    payment = repository.any_payment(session, payment_id, for_update=True)
    if payment is None:
        raise NotFound(f"no payment {payment_id}")
    return payment


def _resolve(ctx: Context, session: Session, payment: Payment, note: str, now: datetime) -> None:
    review_reason, review_code = payment.review_reason, payment.review_code
    decide_and_store(payment, Resolved(), sched=ctx.scheduling(payment.gateway), now=now)
    record_event(
        session,
        payment,
        source=Source.ADMIN,
        outcome=Outcome.RESOLVED,
        from_status=Status(payment.status),
        now=now,
        detail={"note": note, "review_reason": review_reason, "review_code": review_code},
    )
    payment.updated_at = now
