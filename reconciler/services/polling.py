"""Payment polling, the engine's first kind: ask the gateway, complete the row with the answer.

The claim returns the whole row (a `Snapshot`); the answer goes through the one decision,
`domain.payment.apply`, over that snapshot, and the engine's completer stores a batch of
such changes with `services.changes.store`: one UPDATE per row that checks the lease and
the version in the same statement. A row changed meanwhile by a webhook (version moved,
lease still ours) is read again under its lock and decided again, so no answer is lost.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from reconciler.adapters import repository
from reconciler.adapters.gateways.base import AuthError, Cancels, GatewayPayment, TransientError
from reconciler.adapters.models import DEFAULT_ACCOUNT
from reconciler.adapters.repository.changes import Stored
from reconciler.domain.ownership import ABANDONED, abandoned, hidden
from reconciler.domain.payment import Entry, Event, Reporting, Snapshot, apply
from reconciler.domain.policy import PollPolicy
from reconciler.domain.status import Outcome as ReportOutcome
from reconciler.domain.status import Source
from reconciler.domain.sync import Held
from reconciler.services import changes, creation, gateway_calls, reliability
from reconciler.services.context import Context
from reconciler.services.engine import NOT_CALLABLE
from reconciler.services.gateway_calls import Answer
from reconciler.services.work import POLLS, Done, Outcome, Signal

log = logging.getLogger(__name__)

GATEWAY_NOT_CONFIGURED = "gateway not configured"


def breaker_key(gateway: str, account: str) -> str:
    """Name a gateway account's breaker: the gateway for `default`, else `gateway/gwa_…`."""
    return gateway if account == DEFAULT_ACCOUNT else f"{gateway}/{account}"


class PaymentPolls:
    """Poll (or create) payments at their gateways; the breaker's target is the gateway."""

    name = POLLS
    queue = repository.PAYMENT_POLLS
    max_in_flight_per_target: int | None = None

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.concurrency = max(1, ctx.settings.sweep_concurrency)
        self.counts: Counter[str] = Counter()  # "poll" / "create" calls made, for reports
        self._lock = threading.Lock()

    def row(self, claimed: Row[Any]) -> Snapshot:
        return repository.snapshot_of(claimed)

    def row_id(self, row: Snapshot) -> str:
        return row.id

    def target(self, row: Snapshot) -> str | None:
        """Key the breaker per account: one merchant's revoked key trips only its own."""
        if self.ctx.gateway_for(row.gateway, row.gateway_account) is None:
            return None
        return breaker_key(row.gateway, row.gateway_account)

    def call(self, row: Snapshot) -> Outcome[Answer]:
        gateway = self.ctx.gateway_for(row.gateway, row.gateway_account)
        if gateway is None:  # removed since the claim: held like a gateway not configured
            answer: Answer = TransientError(GATEWAY_NOT_CONFIGURED)
            return Outcome(answer, _signal(answer), gateway_calls.label(answer), _words(answer))
        with self._lock:
            self.counts["create" if row.creating else "poll"] += 1
        if row.gateway_payment_id is None:
            request = creation.request_for(
                amount=row.amount,
                currency=row.currency,
                merchant_reference=row.merchant_reference,
                idempotency_key=row.idempotency_key,
                merchant_id=row.merchant_id,
            )
            answer = gateway_calls.create(gateway, request)
        else:
            answer = gateway_calls.fetch(gateway, row.gateway_payment_id)
            if self._cancels_first(row, answer) and isinstance(gateway, Cancels):
                # Abandoned: canceled at the gateway first, so nobody can pay it later.
                answer = gateway_calls.cancel(gateway, row.gateway_payment_id, ABANDONED)
        return Outcome(answer, _signal(answer), gateway_calls.label(answer), _words(answer))

    def _cancels_first(self, row: Snapshot, answer: Answer) -> bool:
        return (
            isinstance(answer, GatewayPayment)
            and row.gateway == "stripe"
            and self.ctx.settings.stripe_cancel_abandoned
            and not hidden(row, answer.owner)  # never another merchant's payment
            and abandoned(
                row.status, row.created_at, answer.report(), self._policy(row), self.ctx.clock()
            )
        )

    def complete(
        self, session: Session, done: Sequence[Done[Snapshot, Answer]], owner: str
    ) -> list[bool]:
        """Decide every ended row over its snapshot and store the batch (lease checked)."""
        results: dict[int, bool] = {}
        batch: list[tuple[int, Stored]] = []
        for index, item in enumerate(done):
            if item.outcome is not None and item.row.creating:
                results[index] = self._store_creation(session, item, owner)
                continue
            change = apply(
                item.row, self._event(item), self._policy(item.row), item.now, self.ctx.rand
            )
            batch.append((index, Stored(change, owner)))
        written = changes.store(session, [stored for _, stored in batch], notify=self.ctx.notify)
        reliability.note_polls(
            self.ctx, [s.change for (_, s), ok in zip(batch, written, strict=True) if ok]
        )
        for (index, _), ok in zip(batch, written, strict=True):
            results[index] = ok or self._again(session, done[index], owner)
        return [results[index] for index in range(len(done))]

    def _event(self, item: Done[Snapshot, Answer]) -> Event:
        if item.hold is not None:
            why = GATEWAY_NOT_CONFIGURED if item.hold.why == NOT_CALLABLE else item.hold.why
            return Held(until=item.hold.until, error=why)
        assert item.outcome is not None
        answer = item.outcome.result
        if isinstance(answer, GatewayPayment):
            return Reporting(
                report=answer.report(),
                source=Source.POLL,
                polled=True,
                detail=dict(answer.detail),
                error=f"attempt failed: {answer.attempt_error}" if answer.attempt_error else None,
            )
        return gateway_calls.failure_event(answer, hold_until=item.now)

    def _again(self, session: Session, item: Done[Snapshot, Answer], owner: str) -> bool:
        """Decide once more over the row as it is now, if the lease is still ours."""
        current = repository.lock_snapshot(session, item.row.id, owner=owner)
        if current is None:
            self._lost(session, item)
            return False
        change = apply(current, self._event(item), self._policy(current), item.now, self.ctx.rand)
        stored = changes.store(session, [Stored(change, owner)], notify=self.ctx.notify)[0]
        reliability.note_polls(self.ctx, [change] if stored else [])
        return stored

    def _lost(self, session: Session, item: Done[Snapshot, Answer]) -> None:
        answer = item.outcome.result if item.outcome is not None else None
        if not isinstance(answer, GatewayPayment):
            return
        status = repository.payment_status(session, item.row.id)
        if status is None:
            return
        lost = Entry(
            source=Source.POLL,
            outcome=ReportOutcome.LOST_LEASE,
            from_status=status,
            to_status=status,
            recorded_at=item.now,
            gateway_status=answer.gateway_status,
            occurred_at=answer.occurred_at,
            detail={"reason": "answer arrived after the lease expired"},
        )
        changes.append_entry(session, item.row.id, lost)

    def _store_creation(self, session: Session, item: Done[Snapshot, Answer], owner: str) -> bool:
        """Store a creation's answer (rare: once per payment) on the ORM row."""
        if not repository.release_lease(session, self.queue, item.row.id, owner):
            return False
        payment = repository.payment_for_update(session, item.row.id)
        if payment is not None and item.outcome is not None:
            creation.store(
                session,
                payment,
                item.outcome.result,
                source=Source.POLL,
                now=item.now,
                sched=self.ctx.scheduling(payment.gateway),
            )
        return True

    def _policy(self, row: Snapshot) -> PollPolicy:
        return self.ctx.policy(row.gateway)


def _signal(answer: Answer) -> Signal:
    if isinstance(answer, AuthError):
        log.error("gateway rejected our credentials; breaker opened", extra={"error": str(answer)})
        return Signal.TRIP
    if isinstance(answer, TransientError):  # logged at WARNING where the call failed
        return Signal.FAILURE
    return Signal.SUCCESS


def _words(answer: Answer) -> str:
    if isinstance(answer, GatewayPayment):
        return ""
    return ("auth: " if isinstance(answer, AuthError) else "") + gateway_calls.describe(answer)
