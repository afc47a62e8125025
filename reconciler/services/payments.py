"""Merchant use cases: register or create a payment, read it, list, timeline, refresh."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reconciler.adapters import repository
from reconciler.adapters.gateways.base import (
    AuthError,
    CreateRequest,
    GatewayError,
    GatewayPayment,
    RequestRejected,
)
from reconciler.adapters.models import Merchant, Payment, PaymentEvent
from reconciler.bootstrap import Context
from reconciler.config import GATEWAYS
from reconciler.domain.policy import first_poll_at, give_up_deadline
from reconciler.domain.status import Report, Source, Status, SyncState
from reconciler.services.errors import Conflict, GatewayUnavailable, NotFound, ValidationFailed
from reconciler.services.reports import apply_orphans, apply_report
from reconciler.services.schedule import reschedule

log = logging.getLogger(__name__)

MAX_LIST_LIMIT = 100


@dataclass(frozen=True)
class PaymentRequest:
    """A `POST /v1/payments` body, validated at the edge (`entrypoints.schemas`)."""

    merchant_reference: str
    gateway: str
    amount: int
    currency: str
    gateway_payment_id: str | None = None

    def fingerprint(self) -> str:
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def register_payment(
    ctx: Context, merchant: Merchant, request: PaymentRequest
) -> tuple[Payment, bool]:
    """Register (or create at the gateway) a payment; idempotent on the merchant reference.

    Returns the payment and whether it is new. Creation at the gateway happens after the
    row is committed, so a crash or a gateway outage leaves a row the sweep will retry
    with the same idempotency key.
    """
    if not ctx.can_register(request.gateway):
        raise GatewayUnavailable(
            f"gateway {request.gateway!r} is not configured on this service "
            f"(set its RECONCILER_{request.gateway.upper()}_* credentials)"
        )
    fingerprint = request.fingerprint()
    now = ctx.clock()
    policy = ctx.settings.policy(request.gateway)
    try:
        with ctx.sessions.begin() as session:
            existing = repository.payment_by_reference(
                session, merchant.id, request.merchant_reference
            )
            if existing is not None:
                return _replay(existing, fingerprint), False
            if request.gateway_payment_id is not None and repository.payment_by_gateway_id(
                session, request.gateway, request.gateway_payment_id
            ):
                raise Conflict(
                    f"{request.gateway} payment {request.gateway_payment_id} is already tracked"
                )
            payment = Payment(
                id=new_id("pay"),
                merchant_id=merchant.id,
                merchant_reference=request.merchant_reference,
                request_fingerprint=fingerprint,
                gateway=request.gateway,
                gateway_payment_id=request.gateway_payment_id,
                idempotency_key=new_id("idem"),
                amount=request.amount,
                currency=request.currency,
                status=Status.PENDING.value,
                created_at=now,
                updated_at=now,
                sync_state=SyncState.AWAITING_WEBHOOK.value,
                poll_attempts=0,
                next_poll_at=(
                    first_poll_at(policy, now)
                    if request.gateway_payment_id
                    else creation_fallback_at(ctx, now)
                ),
                give_up_at=give_up_deadline(policy, now),
            )
            session.add(payment)
            session.flush()
            apply_orphans(session, payment, now=now, policy=policy)
    except IntegrityError:
        # A concurrent request with the same reference (or gateway id) won the race.
        with ctx.read() as session:
            existing = repository.payment_by_reference(
                session, merchant.id, request.merchant_reference
            )
        if existing is None:
            raise Conflict(
                f"{request.gateway} payment {request.gateway_payment_id} is already tracked"
            ) from None
        return _replay(existing, fingerprint), False
    if request.gateway_payment_id is None:
        payment = create_at_gateway(ctx, payment.id, source=Source.API)
    return payment, True


def creation_fallback_at(ctx: Context, now: datetime) -> datetime:
    """Say when the sweep should create the payment if this request's own attempt is lost.

    The request creates it at the gateway right after committing the row; the sweep only
    steps in once that attempt must have ended (a crash, a timeout), with the same key.
    """
    settings = ctx.settings
    return now + timedelta(seconds=settings.connect_timeout_s + settings.create_timeout_s + 1)


def _replay(existing: Payment, fingerprint: str) -> Payment:
    if existing.request_fingerprint != fingerprint:
        raise Conflict(
            f"merchant_reference {existing.merchant_reference!r} was registered "
            "with a different body"
        )
    return existing


def create_at_gateway(ctx: Context, payment_id: str, *, source: Source) -> Payment:
    """Create the payment at its gateway now; on failure schedule a retry with backoff."""
    with ctx.read() as session:
        payment = session.get_one(Payment, payment_id)
        request = CreateRequest(
            amount=payment.amount,
            currency=payment.currency,
            merchant_reference=payment.merchant_reference,
            idempotency_key=payment.idempotency_key,
        )
    answer: GatewayPayment | GatewayError
    try:
        answer = ctx.gateways[payment.gateway].create_payment(request)
    except GatewayError as exc:
        answer = exc
    with ctx.sessions.begin() as session:
        payment = repository.payment_for_update(session, payment_id) or payment
        record_creation(session, ctx, payment, answer, source=source, now=ctx.clock())
    return payment


def record_creation(
    session: Session,
    ctx: Context,
    payment: Payment,
    answer: GatewayPayment | GatewayError,
    *,
    source: Source,
    now: datetime,
) -> None:
    """Store the outcome of a creation attempt (the caller holds the row lock)."""
    policy = ctx.settings.policy(payment.gateway)
    if payment.gateway_payment_id is not None:
        return  # another attempt already succeeded
    if isinstance(answer, GatewayPayment):
        payment.gateway_payment_id = answer.gateway_payment_id
        payment.last_error = None
        payment.updated_at = now
        payment.sync_state = SyncState.AWAITING_WEBHOOK.value
        payment.next_poll_at = first_poll_at(policy, now)
        apply_report(session, payment, answer.report(), source=source, now=now, policy=policy)
        apply_orphans(session, payment, now=now, policy=policy)
        return
    payment.last_error = f"create: {answer}"
    payment.updated_at = now
    if isinstance(answer, RequestRejected):
        apply_report(
            session,
            payment,
            Report(Status.FAILED, "creation_rejected"),
            source=source,
            now=now,
            policy=policy,
            detail={"error": str(answer)},
        )
        return
    if isinstance(answer, AuthError):
        # Our configuration is wrong, not the payment: retry after a breaker cool-down
        # without counting an attempt against the payment's schedule.
        log.error("gateway rejected our credentials", extra={"gateway": payment.gateway})
        cooldown = ctx.settings.breaker_cooldown_s * (0.5 + 0.5 * ctx.rand())
        payment.next_poll_at = now + timedelta(seconds=cooldown)
        payment.sync_state = SyncState.POLLING.value
        return
    payment.poll_attempts += 1
    reschedule(
        payment,
        policy=policy,
        now=now,
        retry_after=getattr(answer, "retry_after", None),
        rand=ctx.rand,
    )


def page_start(limit: int, cursor: str | None) -> tuple[datetime, str] | None:
    """Check a page size and decode the cursor a previous page returned."""
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIST_LIMIT}")
    try:
        return repository.decode_cursor(cursor) if cursor else None
    except ValueError:
        raise ValidationFailed("cursor is not one this API returned") from None


def get_payment(ctx: Context, merchant: Merchant, payment_id: str) -> Payment:
    with ctx.read() as session:
        payment = repository.merchant_payment(session, merchant.id, payment_id)
    if payment is None:
        raise NotFound(f"no payment {payment_id}")
    return payment


def list_payments(
    ctx: Context,
    merchant: Merchant,
    *,
    status: str | None,
    gateway: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Payment], str | None]:
    """Return one page of the merchant's payments, newest first, and the next cursor."""
    if status is not None and status not in {s.value for s in Status}:
        raise ValidationFailed(f"status must be one of: {', '.join(s.value for s in Status)}")
    if gateway is not None and gateway not in GATEWAYS:
        raise ValidationFailed(f"gateway must be one of: {', '.join(GATEWAYS)}")
    after = page_start(limit, cursor)
    with ctx.read() as session:
        page = repository.list_payments(
            session, merchant.id, status=status, gateway=gateway, limit=limit + 1, after=after
        )
    more = len(page) > limit
    page = page[:limit]
    return page, repository.encode_cursor(page[-1]) if more else None


def payment_timeline(ctx: Context, merchant: Merchant, payment_id: str) -> Sequence[PaymentEvent]:
    with ctx.read() as session:
        payment = repository.merchant_payment(session, merchant.id, payment_id)
        if payment is None:
            raise NotFound(f"no payment {payment_id}")
        return repository.payment_events(session, payment_id)


def refresh_payment(ctx: Context, merchant: Merchant, payment_id: str) -> Payment:
    """Make a payment due now; a payment that gave up gets a fresh give-up deadline."""
    now = ctx.clock()
    with ctx.sessions.begin() as session:
        payment = repository.merchant_payment(session, merchant.id, payment_id, for_update=True)
        if payment is None:
            raise NotFound(f"no payment {payment_id}")
        make_due(ctx, payment, now)
    return payment


def make_due(ctx: Context, payment: Payment, now: datetime) -> None:
    """Schedule a poll now; a payment that gave up gets a fresh give-up deadline."""
    if payment.sync_state == SyncState.GAVE_UP:
        payment.give_up_at = give_up_deadline(ctx.settings.policy(payment.gateway), now)
        payment.sync_state = SyncState.POLLING.value
    payment.next_poll_at = now
    payment.updated_at = now
