"""Payment polling, the engine's first kind: ask the gateway, store the answer as a report.

Storing a poll's answer reads like ingesting a webhook: both end in
`reports.apply_report`, the one function through which a status changes.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from reconciler.adapters import repository
from reconciler.adapters.gateways.base import AuthError, GatewayPayment, TransientError
from reconciler.domain.status import Outcome, Source, Status
from reconciler.domain.sync import Held, NotKnown
from reconciler.services import creation, gateway_calls
from reconciler.services.context import Context
from reconciler.services.engine import NOT_CALLABLE, Signal
from reconciler.services.gateway_calls import Answer
from reconciler.services.reports import apply_orphans, apply_report, record_event
from reconciler.services.schedule import decide_and_store

log = logging.getLogger(__name__)

GATEWAY_NOT_CONFIGURED = "gateway not configured"
# A webhook that raced the payment's registration (on PostgreSQL neither transaction sees
# the other's row) is kept as an orphan; the payment's early polls pick it up. Later
# polls skip the look: orphans only arise around registration or creation.
ORPHAN_RACE_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class PollRow:
    """A payment leased for one call: a poll, or a creation when it has no gateway id."""

    id: str
    gateway: str
    gateway_payment_id: str | None
    amount: int
    currency: str
    merchant_reference: str
    idempotency_key: str

    @property
    def creating(self) -> bool:
        return self.gateway_payment_id is None


class PaymentPolls:
    """Poll (or create) payments at their gateways; the breaker's target is the gateway."""

    name = "poll"
    queue = repository.PAYMENT_POLLS
    max_in_flight_per_target: int | None = None

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.concurrency = max(1, ctx.settings.sweep_concurrency)
        self.counts: Counter[str] = Counter()  # "poll" / "create" calls made, for reports
        self._lock = threading.Lock()

    def row(self, claimed: Row[Any]) -> PollRow:
        return PollRow(**claimed._mapping)

    def row_id(self, row: PollRow) -> str:
        return row.id

    def target(self, row: PollRow) -> str | None:
        return row.gateway if row.gateway in self.ctx.gateways else None

    def call(self, row: PollRow) -> Answer:
        gateway = self.ctx.gateways[row.gateway]
        with self._lock:
            self.counts["create" if row.creating else "poll"] += 1
        if row.gateway_payment_id is None:
            request = creation.request_for(
                amount=row.amount,
                currency=row.currency,
                merchant_reference=row.merchant_reference,
                idempotency_key=row.idempotency_key,
            )
            return gateway_calls.create(gateway, request)
        return gateway_calls.fetch(gateway, row.gateway_payment_id)

    def signal(self, result: Answer) -> Signal:
        if isinstance(result, AuthError):
            log.error(
                "gateway rejected our credentials; breaker opened",
                extra={"error": str(result)},
            )
            return Signal.TRIP
        if isinstance(result, TransientError):  # logged where the call failed
            return Signal.FAILURE
        return Signal.SUCCESS

    def label(self, result: Answer) -> str:
        return gateway_calls.label(result)

    def describe(self, result: Answer) -> str:
        if isinstance(result, GatewayPayment):
            return ""
        return ("auth: " if isinstance(result, AuthError) else "") + gateway_calls.describe(result)

    def store(self, session: Session, row: PollRow, result: Answer, now: datetime) -> None:
        payment = repository.payment_for_update(session, row.id)
        if payment is None:
            return
        sched = self.ctx.scheduling(payment.gateway)
        if row.creating:
            creation.store(session, payment, result, source=Source.POLL, now=now, sched=sched)
            return
        if isinstance(result, GatewayPayment):
            apply_report(
                session,
                payment,
                result.report(),
                source=Source.POLL,
                now=now,
                sched=sched,
                detail=dict(result.detail),
                polled=True,
                error=f"attempt failed: {result.attempt_error}" if result.attempt_error else None,
            )
            if now - payment.created_at < ORPHAN_RACE_WINDOW:
                apply_orphans(session, payment, now=now, sched=sched)
            return
        event = gateway_calls.failure_event(result, hold_until=now)
        if isinstance(event, NotKnown):
            record_event(
                session,
                payment,
                source=Source.POLL,
                outcome=Outcome.ERROR,
                from_status=Status(payment.status),
                now=now,
                detail={"error": "the gateway does not know this payment"},
            )
        decide_and_store(payment, event, sched=sched, now=now)

    def hold(
        self, session: Session, row: PollRow, until: datetime, why: str, now: datetime
    ) -> None:
        payment = repository.payment_for_update(session, row.id)
        if payment is None:
            return
        words = GATEWAY_NOT_CONFIGURED if why == NOT_CALLABLE else why
        decide_and_store(
            payment,
            Held(until=until, error=words),
            sched=self.ctx.scheduling(payment.gateway),
            now=now,
        )

    def lost(self, session: Session, row: PollRow, result: Answer, now: datetime) -> None:
        if not isinstance(result, GatewayPayment):
            return
        payment = repository.payment_for_update(session, row.id)
        if payment is None:
            return
        record_event(
            session,
            payment,
            source=Source.POLL,
            outcome=Outcome.LOST_LEASE,
            from_status=Status(payment.status),
            now=now,
            gateway_status=result.gateway_status,
            occurred_at=result.occurred_at,
            detail={"reason": "answer arrived after the lease expired"},
        )
