"""Merchant use cases: register or create a payment, read it, list, timeline, refresh."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from enum import StrEnum

from sqlalchemy.exc import IntegrityError

from reconciler.adapters import repository, wakeups
from reconciler.adapters.models import Merchant, Payment, PaymentEvent
from reconciler.config import GATEWAYS
from reconciler.domain.status import Source, Status, SyncState
from reconciler.domain.sync import Refreshed as RefreshedEvent
from reconciler.domain.sync import Registered
from reconciler.services import accounts, changes, creation, reliability
from reconciler.services.context import Context
from reconciler.services.errors import Conflict, NotFound, ValidationFailed
from reconciler.services.reports import apply_orphans
from reconciler.services.schedule import decide_and_store, new_sync
from reconciler.services.work import POLLS

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
    gateway_account: str | None = None

    def fingerprint(self) -> str:
        body = asdict(self)
        if body["gateway_account"] is None:
            del body["gateway_account"]  # as bodies were before accounts existed
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
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
    fingerprint = request.fingerprint()
    now = ctx.clock()
    for _attempt in range(2):
        try:
            payment, new = _insert(ctx, merchant, request, fingerprint, now)
        except IntegrityError:
            # A concurrent request with the same reference (or gateway id) won the race.
            with ctx.read() as session:
                existing = repository.payment_by_reference(
                    session, merchant.id, request.merchant_reference
                )
            if existing is not None:
                return _replay(existing, fingerprint), False
            continue  # its gateway id: the next attempt sees the winner's row
        if new and request.gateway_payment_id is None:
            payment = creation.create_now(ctx, payment.id, source=Source.API)
        return payment, new
    raise Conflict(f"{request.gateway} payment {request.gateway_payment_id} is already tracked")


def _insert(
    ctx: Context, merchant: Merchant, request: PaymentRequest, fingerprint: str, now: datetime
) -> tuple[Payment, bool]:
    """Insert the payment row in one transaction, or find the one it replays."""
    sched = ctx.scheduling(request.gateway)
    with ctx.sessions.begin() as session:
        if request.gateway_payment_id is not None:
            # A webhook for it may be arriving now: one of the two waits for the other.
            repository.lock_gateway_payment(session, request.gateway, request.gateway_payment_id)
        existing = repository.payment_by_reference(session, merchant.id, request.merchant_reference)
        if existing is not None:
            return _replay(existing, fingerprint), False
        account = accounts.account_for_payment(
            ctx, session, merchant.id, request.gateway, request.gateway_account
        )
        # Each account's own first delay (`auto` measures each account's webhooks).
        key = reliability.account_key(request.gateway, account)
        first = ctx.reliability.first_delay_for(key, now, request.gateway)
        if first.seconds != sched.policy.first_delay:
            sched = replace(sched, policy=replace(sched.policy, first_delay=first.seconds))
        shadow = False
        if request.gateway_payment_id is not None:
            mine = repository.payment_by_gateway_id(
                session,
                request.gateway,
                request.gateway_payment_id,
                merchant_id=merchant.id,
                account=account,
            )
            if mine is not None:
                return _tracked(mine, request, fingerprint), False
            # Another merchant's, on the shared account: saying so would tell that it
            # exists. This registration is a shadow, told what an unknown id is told.
            shadow = repository.gateway_payment_tracked(
                session, request.gateway, request.gateway_payment_id, account=account
            )
        payment = Payment(
            id=new_id("pay"),
            merchant_id=merchant.id,
            merchant_reference=request.merchant_reference,
            request_fingerprint=fingerprint,
            gateway=request.gateway,
            gateway_account=account,
            gateway_payment_id=request.gateway_payment_id,
            shadow=shadow,
            idempotency_key=new_id("idem"),
            amount=request.amount,
            currency=request.currency,
            status=Status.PENDING.value,
            created_at=now,
            updated_at=now,
            **new_sync(
                Registered(
                    creation_deadline=(
                        None if request.gateway_payment_id else creation.deadline(ctx.settings, now)
                    )
                ),
                sched=sched,
                now=now,
            ),
        )
        session.add(payment)
        wakeups.note_due(session, payment.next_poll_at, POLLS)
        session.flush()
        changes.append_entry(session, payment.id, reliability.registration_entry(first, now))
        apply_orphans(session, payment, now=now, sched=sched)
    return payment, True


def _tracked(tracked: Payment, request: PaymentRequest, fingerprint: str) -> Payment:
    """Answer the merchant's registration of a gateway payment it tracks already.

    Under the same reference it is a replay (a concurrent identical request committed
    between our two reads); under another it is a conflict with the merchant's own row.
    """
    if tracked.merchant_reference == request.merchant_reference:
        return _replay(tracked, fingerprint)
    raise Conflict(
        f"{request.gateway} payment {request.gateway_payment_id} is already tracked "
        f"as {tracked.merchant_reference!r}"
    )


def _replay(existing: Payment, fingerprint: str) -> Payment:
    if existing.request_fingerprint != fingerprint:
        raise Conflict(
            f"merchant_reference {existing.merchant_reference!r} was registered "
            "with a different body"
        )
    return existing


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


class RefreshOutcome(StrEnum):
    """What a refresh did, told to whoever asked."""

    SCHEDULED = "scheduled"  # a poll is due at once
    THROTTLED = "throttled"  # polled moments ago: the next poll waits for the throttle
    SETTLED = "settled"  # the status is final: no gateway call is made
    REVIVED = "revived"  # polling had given up: it resumes, with a fresh deadline


@dataclass(frozen=True)
class Refreshed:
    payment: Payment
    outcome: RefreshOutcome


def refresh_payment(ctx: Context, merchant: Merchant, payment_id: str) -> Refreshed:
    """Poll the payment as soon as the refresh throttle allows (reviving a gave-up one)."""
    now = ctx.clock()
    with ctx.sessions.begin() as session:
        payment = repository.merchant_payment(session, merchant.id, payment_id, for_update=True)
        if payment is None:
            raise NotFound(f"no payment {payment_id}")
        outcome = refresh(ctx, payment, now)
    return Refreshed(payment, outcome)


def refresh(ctx: Context, payment: Payment, now: datetime) -> RefreshOutcome:
    """Ask for a poll now: free for a settled payment, throttled per payment otherwise."""
    before = SyncState(payment.sync_state)
    decision = decide_and_store(
        payment, RefreshedEvent(), sched=ctx.scheduling(payment.gateway), now=now
    )
    if before is SyncState.SETTLED:
        return RefreshOutcome.SETTLED
    if before is SyncState.GAVE_UP:
        return RefreshOutcome.REVIVED
    if decision.next_poll_at is not None and decision.next_poll_at > now:
        return RefreshOutcome.THROTTLED
    return RefreshOutcome.SCHEDULED
