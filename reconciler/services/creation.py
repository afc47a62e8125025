"""Create a payment at its gateway: one request, one way to store the answer.

The registering request creates the payment right after committing its row; if that
attempt is lost (a crash, a timeout) the sweep retries with the same idempotency key
once the request's attempt must have ended. Both go through `request_for` and `store`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from reconciler.adapters import repository
from reconciler.adapters.gateways.base import (
    CreateRequest,
    GatewayError,
    GatewayPayment,
    RequestRejected,
    TransientError,
)
from reconciler.adapters.models import Payment
from reconciler.config import Settings
from reconciler.domain.status import Report, Source, Status
from reconciler.domain.sync import Created
from reconciler.services import gateway_calls
from reconciler.services.context import Context
from reconciler.services.reports import apply_orphans, apply_report
from reconciler.services.schedule import Scheduling, decide_and_store


def request_for(
    *,
    amount: int,
    currency: str,
    merchant_reference: str,
    idempotency_key: str,
    merchant_id: str | None = None,
) -> CreateRequest:
    """Build the creation request; every attempt for one payment sends the same one."""
    return CreateRequest(
        amount=amount,
        currency=currency,
        merchant_reference=merchant_reference,
        idempotency_key=idempotency_key,
        merchant_id=merchant_id,
    )


def deadline(settings: Settings, now: datetime) -> datetime:
    """Say when the sweep steps in if the registering request's own attempt is lost."""
    return now + timedelta(seconds=settings.connect_timeout_s + settings.create_timeout_s + 1)


def create_now(ctx: Context, payment_id: str, *, source: Source) -> Payment:
    """Create the payment at its gateway now and store the answer."""
    with ctx.read() as session:
        payment = session.get_one(Payment, payment_id)
        request = request_for(
            amount=payment.amount,
            currency=payment.currency,
            merchant_reference=payment.merchant_reference,
            idempotency_key=payment.idempotency_key,
            merchant_id=payment.merchant_id,
        )
    gateway = ctx.gateway_for(payment.gateway, payment.gateway_account)
    answer = (
        gateway_calls.create(gateway, request)
        if gateway is not None
        else TransientError("gateway not configured")
    )
    with ctx.sessions.begin() as session:
        payment = repository.payment_for_update(session, payment_id) or payment
        store(
            session,
            payment,
            answer,
            source=source,
            now=ctx.clock(),
            sched=ctx.scheduling(payment.gateway),
        )
    return payment


def store(
    session: Session,
    payment: Payment,
    answer: GatewayPayment | GatewayError,
    *,
    source: Source,
    now: datetime,
    sched: Scheduling,
) -> None:
    """Store the outcome of a creation attempt (the caller holds the row lock)."""
    if payment.gateway_payment_id is not None:
        return  # another attempt already succeeded
    payment.updated_at = now
    if isinstance(answer, GatewayPayment):
        repository.lock_gateway_payment(session, payment.gateway, answer.gateway_payment_id)
        # Tagged with our merchant: a row that named the id first (a guess) shows nothing.
        repository.shadow_others(session, payment, answer.gateway_payment_id)
        payment.gateway_payment_id = answer.gateway_payment_id
        decide_and_store(payment, Created(), sched=sched, now=now)
        apply_report(session, payment, answer.report(), source=source, now=now, sched=sched)
        apply_orphans(session, payment, now=now, sched=sched)
        return
    words = "create: " + gateway_calls.describe(answer)
    if isinstance(answer, RequestRejected):
        apply_report(
            session,
            payment,
            Report(Status.FAILED, "creation_rejected"),
            source=source,
            now=now,
            sched=sched,
            detail={"error": words},
            error=words,
        )
        return
    # Rejected credentials keep the row where it is: the sweep's attempt, due at the
    # creation deadline, meets the same answer and opens the gateway's breaker.
    event = gateway_calls.failure_event(
        answer, hold_until=payment.next_poll_at or now, prefix="create: "
    )
    decide_and_store(payment, event, sched=sched, now=now)
