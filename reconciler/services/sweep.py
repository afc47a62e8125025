"""The sweep: lease due payments, ask their gateways, store answers, schedule the next poll."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from reconciler.adapters import repository
from reconciler.adapters.gateways.base import (
    AuthError,
    CreateRequest,
    GatewayError,
    GatewayPayment,
    NotFoundError,
    RequestRejected,
    TransientError,
)
from reconciler.adapters.models import Payment
from reconciler.adapters.repository import Claim
from reconciler.bootstrap import Context
from reconciler.domain.breaker import CircuitBreaker
from reconciler.domain.status import Outcome, Source, Status, SyncState
from reconciler.services.payments import record_creation
from reconciler.services.reports import (
    apply_orphans,
    apply_report,
    flag_for_review,
    record_event,
)
from reconciler.services.schedule import reschedule

log = logging.getLogger(__name__)

Answer = GatewayPayment | GatewayError


class HeldBack:
    """The breaker kept this call from going out."""


class LeaseTooShort:
    """The call could no longer finish inside our lease: leave the row to the next sweep."""


@dataclass
class SweepReport:
    """What one sweep did, for logs, metrics and tests."""

    claimed: int = 0
    polled: int = 0
    created: int = 0
    held_by_breaker: int = 0
    lost_leases: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0

    def count(self, gateway: str, outcome: str) -> None:
        key = f"{gateway}:{outcome}"
        self.outcomes[key] = self.outcomes.get(key, 0) + 1


Observer = Callable[[SweepReport], None]


class Sweeper:
    """Runs sweeps for one process; owns the breakers and the thread pool."""

    def __init__(self, ctx: Context, *, observer: Observer | None = None) -> None:
        self.ctx = ctx
        self.owner = f"sweep_{secrets.token_hex(8)}"
        settings = ctx.settings
        self.breakers = {
            name: CircuitBreaker(
                threshold=settings.breaker_threshold,
                cooldown=settings.breaker_cooldown_s,
                max_cooldown=settings.breaker_max_cooldown_s,
            )
            for name in ctx.gateways
        }
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, settings.sweep_concurrency), thread_name_prefix="poll"
        )
        self.observer = observer
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def sweep_once(self, now: datetime | None = None) -> SweepReport:
        """Claim due payments, poll them with bounded concurrency, store every answer.

        `now` pins the clock for the whole sweep (tests move it); by default each answer
        is stored at the time it arrives.
        """
        with self._lock:  # one sweep at a time per process
            return self._sweep(now)

    def _sweep(self, pinned: datetime | None) -> SweepReport:
        started = time.monotonic()
        clock: Callable[[], datetime] = self.ctx.clock
        if pinned is not None:
            clock = lambda: pinned  # noqa: E731
        report = SweepReport()
        now = clock()
        settings = self.ctx.settings
        lease_until = now + timedelta(seconds=settings.lease_s)
        with self.ctx.sessions.begin() as session:
            claims = repository.claim_due(
                session,
                now=now,
                limit=settings.sweep_batch_size,
                owner=self.owner,
                lease_until=lease_until,
            )
        report.claimed = len(claims)
        futures = {}
        for claim in claims:
            if claim.gateway not in self.breakers:
                self._hold(claim, now + timedelta(seconds=60), "gateway not configured", report)
            else:
                futures[self._pool.submit(self._call, claim, clock, lease_until)] = claim
        for future in as_completed(futures):
            claim = futures[future]
            answer = future.result()
            if isinstance(answer, LeaseTooShort):
                report.count(claim.gateway, "lease_too_short")
            elif isinstance(answer, HeldBack):
                breaker = self.breakers[claim.gateway]
                self._hold(claim, breaker.retry_at(clock(), self.ctx.rand), "circuit open", report)
            else:
                self._store(claim, answer, clock(), report)
        with self.ctx.sessions.begin() as session:
            repository.record_heartbeat(session, self.owner, clock(), report.claimed)
        report.duration_s = time.monotonic() - started
        if self.observer is not None:
            self.observer(report)
        if report.claimed:
            log.info(
                "sweep done",
                extra={
                    "claimed": report.claimed,
                    "polled": report.polled,
                    "held": report.held_by_breaker,
                    "lost_leases": report.lost_leases,
                    "duration_s": round(report.duration_s, 3),
                },
            )
        return report

    def _call(
        self, claim: Claim, clock: Callable[[], datetime], lease_until: datetime
    ) -> Answer | HeldBack | LeaseTooShort:
        """Ask the gateway, unless its breaker is open; runs on a pool thread.

        The breaker is consulted and fed here, call by call, so an outage that starts in
        the middle of a batch stops the batch after `threshold` failures.
        """
        # A row waiting in the pool behind slow calls may outlive its lease; then another
        # sweeper may claim it, and calling now could poll the payment twice at once.
        settings = self.ctx.settings
        worst_case = timedelta(seconds=settings.connect_timeout_s + settings.read_timeout_s)
        if clock() + worst_case > lease_until:
            return LeaseTooShort()
        breaker = self.breakers[claim.gateway]
        if not breaker.allow(clock()):
            return HeldBack()
        gateway = self.ctx.gateways[claim.gateway]
        answer: Answer
        try:
            if claim.gateway_payment_id is None:
                answer = gateway.create_payment(
                    CreateRequest(
                        amount=claim.amount,
                        currency=claim.currency,
                        merchant_reference=claim.merchant_reference,
                        idempotency_key=claim.idempotency_key,
                    )
                )
            else:
                answer = gateway.fetch_payment(claim.gateway_payment_id)
                if answer.gateway_payment_id != claim.gateway_payment_id:
                    # A gateway that answers about another payment is not believed.
                    answer = TransientError(
                        f"asked for {claim.gateway_payment_id}, "
                        f"the gateway answered about {answer.gateway_payment_id}"
                    )
        except GatewayError as exc:
            answer = exc
        except Exception as exc:  # a bug in an adapter must not kill the sweep
            log.exception("gateway adapter crashed", extra={"gateway": claim.gateway})
            answer = TransientError(f"adapter error: {type(exc).__name__}: {exc}")
        self._feed_breaker(claim.gateway, answer, clock())
        return answer

    def _feed_breaker(self, gateway: str, answer: Answer, now: datetime) -> None:
        breaker = self.breakers[gateway]
        if isinstance(answer, TransientError):
            breaker.record_failure(now)
        elif isinstance(answer, AuthError):
            log.error(
                "gateway rejected our credentials; breaker opened",
                extra={"gateway": gateway, "error": str(answer)},
            )
            breaker.trip(now)
        else:
            breaker.record_success()

    def _hold(self, claim: Claim, until: datetime, why: str, report: SweepReport) -> None:
        """Push a claimed payment back without calling its gateway (not an attempt)."""
        report.held_by_breaker += 1
        report.count(claim.gateway, "held")
        with self.ctx.sessions.begin() as session:
            payment = repository.payment_for_update(session, claim.id)
            if payment is None or payment.lease_owner != self.owner:
                return
            _release(payment)
            payment.last_error = why
            if payment.next_poll_at is not None:
                payment.next_poll_at = until

    def _store(self, claim: Claim, answer: Answer, now: datetime, report: SweepReport) -> None:
        creating = claim.gateway_payment_id is None
        report.count(claim.gateway, _label(answer))
        if creating:
            report.created += 1
        else:
            report.polled += 1
        with self.ctx.sessions.begin() as session:
            payment = repository.payment_for_update(session, claim.id)
            if payment is None:
                return
            if payment.lease_owner != self.owner:
                # Our lease expired and another sweeper took the row: record, don't apply.
                report.lost_leases += 1
                if isinstance(answer, GatewayPayment):
                    record_event(
                        session,
                        payment,
                        source=Source.POLL,
                        outcome=Outcome.LOST_LEASE,
                        from_status=Status(payment.status),
                        now=now,
                        gateway_status=answer.gateway_status,
                        occurred_at=answer.occurred_at,
                        detail={"reason": "answer arrived after the lease expired"},
                    )
                return
            _release(payment)
            payment.last_polled_at = now
            if creating:
                record_creation(session, self.ctx, payment, answer, source=Source.POLL, now=now)
                return
            self._apply_answer(session, payment, answer, now)

    def _apply_answer(
        self, session: Session, payment: Payment, answer: Answer, now: datetime
    ) -> None:
        policy = self.ctx.settings.policy(payment.gateway)
        retry_after: float | None = None
        if isinstance(answer, AuthError):
            # Our configuration is wrong, not the payment: no attempt is counted.
            payment.last_error = f"auth: {answer}"
            payment.next_poll_at = self.breakers[payment.gateway].retry_at(now, self.ctx.rand)
            return
        payment.poll_attempts += 1
        if isinstance(answer, GatewayPayment):
            payment.last_error = (
                f"attempt failed: {answer.attempt_error}" if answer.attempt_error else None
            )
            apply_report(
                session,
                payment,
                answer.report(),
                source=Source.POLL,
                now=now,
                policy=policy,
                detail=dict(answer.detail),
            )
            apply_orphans(session, payment, now=now, policy=policy)
            if payment.status == Status.PENDING and payment.review_reason == NOT_FOUND_REASON:
                # The gateway knows the payment after all: back to the schedule.
                payment.sync_state = SyncState.POLLING.value
                payment.review_reason = None
        elif isinstance(answer, NotFoundError):
            payment.last_error = f"not found: {answer}"
            record_event(
                session,
                payment,
                source=Source.POLL,
                outcome=Outcome.ERROR,
                from_status=Status(payment.status),
                now=now,
                detail={"error": "the gateway does not know this payment"},
            )
            flag_for_review(payment, NOT_FOUND_REASON, now)
            return
        else:
            payment.last_error = str(answer)
            if isinstance(answer, TransientError):
                retry_after = answer.retry_after
        if payment.status != Status.PENDING or payment.sync_state in (
            SyncState.NEEDS_REVIEW,
            SyncState.SETTLED,
        ):
            payment.next_poll_at = None
            return
        reschedule(payment, policy=policy, now=now, retry_after=retry_after, rand=self.ctx.rand)


NOT_FOUND_REASON = "the gateway does not know this payment"


def _release(payment: Payment) -> None:
    payment.lease_owner = None
    payment.lease_expires_at = None


def _label(answer: Answer) -> str:
    if isinstance(answer, GatewayPayment):
        return "ok"
    if isinstance(answer, TransientError):
        return "transient"
    if isinstance(answer, NotFoundError):
        return "not_found"
    if isinstance(answer, AuthError):
        return "auth_error"
    if isinstance(answer, RequestRejected):
        return "rejected"
    return "error"
