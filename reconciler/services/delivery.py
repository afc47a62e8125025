"""Merchant notification delivery, the engine's second kind: one signed POST per attempt.

The breaker's target is the endpoint: each endpoint has its own breaker and a cap on
attempts in flight, so a slow or dead endpoint never takes the slots of a healthy one.
The pure decision is `domain.delivery.decide_delivery`; this module loads what to send,
sends it, and stores what the decision says.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from reconciler.adapters import repository, wakeups
from reconciler.adapters.notify.sender import Sender, new_sender
from reconciler.config import NOTIFY_LEASE_MARGIN_S
from reconciler.domain.delivery import (
    DeliveryOutcome,
    DeliveryRow,
    DeliveryStatus,
    DeliveryUpdate,
    decide_delivery,
    describe_failure,
)
from reconciler.services.context import Context
from reconciler.services.engine import TARGET_BUSY
from reconciler.services.notifications import delivery_job, disable_endpoint
from reconciler.services.work import DELIVERIES, Done, Outcome, Signal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryLease:
    """A delivery leased for one attempt."""

    id: str
    endpoint_id: str
    event_id: str
    requested_at: datetime | None = None  # a merchant asked for this attempt


@dataclass(frozen=True)
class Skipped:
    """Nothing was sent: the delivery is no longer pending (delivered, failed, disabled)."""


Result = DeliveryOutcome | Skipped


class Deliveries:
    """Attempt due deliveries; the breaker's target is the endpoint."""

    name = DELIVERIES

    def __init__(self, ctx: Context, sender: Sender | None = None) -> None:
        self.ctx = ctx
        notify = ctx.settings.notify
        self.settings = notify
        # Merchants in turn, each under its cap (across replicas: the claim counts leases).
        self.queue = replace(
            repository.DELIVERIES,
            per_merchant_cap=notify.max_in_flight_per_merchant,
            returning=(*repository.DELIVERIES.returning, "requested_at"),
        )
        self.concurrency = notify.concurrency
        self.max_in_flight_per_target: int | None = notify.max_in_flight_per_endpoint
        # The sender ends every attempt by the timeout; the lease must outlast it by a
        # margin, or it could lapse mid-attempt and another replica send a second copy.
        self.max_call_s = notify.timeout_s + NOTIFY_LEASE_MARGIN_S
        # Each attempt's payment, read with what to send, for the log line of its result
        # (so storing the result, under the database's write lock, need not read it).
        self._payments: dict[str, str] = {}
        self._lock = threading.Lock()
        self.sender = sender or new_sender(
            timeout_s=notify.timeout_s,
            allow_private=notify.allow_private,
            pool_maxsize=notify.concurrency,
            resolver=ctx.resolver,
        )

    def row(self, claimed: Row[Any]) -> DeliveryLease:
        return DeliveryLease(**claimed._mapping)

    def row_id(self, row: DeliveryLease) -> str:
        return row.id

    def target(self, row: DeliveryLease) -> str | None:
        return row.endpoint_id

    def forced(self, row: DeliveryLease) -> bool:
        """A retry or recover the merchant asked for is attempted even past an open
        breaker: it is the probe that tells whether the endpoint works again."""
        return row.requested_at is not None

    def call(self, row: DeliveryLease) -> Outcome[Result]:
        result = self._attempt(row)
        return Outcome(result, _signal(result), _label(result), _describe(result))

    def complete(
        self, session: Session, done: Sequence[Done[DeliveryLease, Result]], owner: str
    ) -> list[bool]:
        """Store a batch of ended attempts, each only while `owner` still holds its lease.

        Rows are taken in endpoint order, so two replicas storing batches that share
        endpoints lock those endpoints in the same order and never deadlock each other.
        """
        kept = [False] * len(done)
        for index in sorted(range(len(done)), key=lambda i: (done[i].row.endpoint_id, i)):
            item = done[index]
            found = repository.leased_attempt(session, item.row.id, owner)
            if found is None:
                if item.outcome is not None:
                    self._lost(item.row)
                continue
            kept[index] = True
            if found.status != DeliveryStatus.PENDING.value:
                # Failed by a disable or a delete while the attempt was out: just the lease.
                repository.finish_attempt(session, item.row.id, {})
            elif item.hold is not None:
                self._hold(session, item.row, found, item.hold.until, item.hold.why, item.now)
            elif item.outcome is not None:
                self._store(session, item.row, found, item.outcome.result, item.now)
        return kept

    def _attempt(self, row: DeliveryLease) -> Result:
        # Signatures carry the real time: a receiver refuses a webhook-timestamp far off.
        with self.ctx.read() as session:
            job = delivery_job(session, row.id, now=self.ctx.clock())
        if job is None:
            return Skipped()
        with self._lock:
            self._payments[row.id] = job.payment_id
        secrets = self.ctx.secrets.open_all(job.secrets)  # stored sealed
        return self.sender.send(job.url, event_id=job.event_id, body=job.body, secrets=secrets)

    def _store(
        self, session: Session, row: DeliveryLease, found: Row[Any], result: Result, now: datetime
    ) -> None:
        with self._lock:
            payment_id = self._payments.pop(row.id, None)
        off = _switched_off(found)
        if isinstance(result, Skipped):
            failed = {"status": DeliveryStatus.FAILED.value, "next_attempt_at": None}
            # Nothing was sent: with the endpoint off the row fails, else it waits its turn.
            repository.finish_attempt(session, row.id, {**failed, "last_error": off} if off else {})
            return
        update = decide_delivery(
            DeliveryRow(found.attempts, found.last_delay_s, found.give_up_at),
            result,
            now=now,
            policy=self.settings.policy,
            rand=self.ctx.rand,
        )
        if off is not None and update.status is DeliveryStatus.PENDING:
            # Switched off while this attempt was out (the halt skipped the row this
            # store had locked): no retry, the delivery fails like the endpoint's others.
            update = replace(
                update, status=DeliveryStatus.FAILED, next_attempt_at=None, last_error=off
            )
        repository.finish_attempt(
            session,
            row.id,
            {
                "status": update.status.value,
                "attempts": update.attempts,
                "next_attempt_at": update.next_attempt_at,
                "last_attempt_at": update.last_attempt_at,
                "last_response_status": update.last_response_status,
                "last_error": update.last_error,
                "last_delay_s": update.last_delay_s,
                "delivered_at": update.delivered_at,
                "requested_at": None,
            },
        )
        wakeups.note_due(session, update.next_attempt_at, self.name)
        if update.disable_endpoint is not None:
            disable_endpoint(session, row.endpoint_id, reason=update.disable_endpoint, now=now)
        elif off is None:
            self._track_endpoint(session, row.endpoint_id, found, update, now)
        log.log(
            logging.INFO if update.status is not DeliveryStatus.FAILED else logging.WARNING,
            "delivery attempted",
            extra={
                "delivery_id": row.id,
                "endpoint_id": row.endpoint_id,
                "event_id": row.event_id,
                "payment_id": payment_id,
                "attempt": update.attempts,
                "status": update.status.value,
                "response_status": update.last_response_status,
                "error": update.last_error,
                "duration_s": round(result.duration_s, 3),
            },
        )

    def _track_endpoint(
        self,
        session: Session,
        endpoint_id: str,
        found: Row[Any],
        update: DeliveryUpdate,
        now: datetime,
    ) -> None:
        """Note the endpoint's last error and since when it fails; disable it after the period."""
        if update.status is DeliveryStatus.DELIVERED:
            if found.failing_since is not None or found.endpoint_error is not None:
                healthy = {"failing_since": None, "last_error": None}
                repository.note_endpoint_health(session, endpoint_id, healthy)
            return
        since = found.failing_since or now
        if now - since >= timedelta(seconds=self.settings.disable_after_s):
            days = self.settings.disable_after_s / 86400
            reason = f"every delivery failed for {days:g} days"
            log.warning("endpoint disabled", extra={"endpoint_id": endpoint_id, "reason": reason})
            disable_endpoint(session, endpoint_id, reason=reason, now=now)
            return
        failing = {"last_error": update.last_error, "last_error_at": now, "failing_since": since}
        repository.note_endpoint_health(session, endpoint_id, failing)

    def _hold(
        self,
        session: Session,
        row: DeliveryLease,
        found: Row[Any],
        until: datetime,
        why: str,
        now: datetime,
    ) -> None:
        if why == TARGET_BUSY:
            # The endpoint is busy, not failing: the row keeps its turn, past the deadline
            # too (the attempt then decides; a failure after the deadline is final).
            repository.finish_attempt(session, row.id, {"next_attempt_at": until})
            wakeups.note_due(session, until, self.name)
            return
        if now >= found.give_up_at:
            # Held at its deadline by an open breaker: capping the hold at the deadline
            # would make the row due again at once, claimed and held on every tick.
            gave_up = {
                "status": DeliveryStatus.FAILED.value,
                "next_attempt_at": None,
                "last_error": f"gave up: endpoint {why}",
            }
            repository.finish_attempt(session, row.id, gave_up)
            log.warning(
                "delivery gave up",
                extra={
                    "delivery_id": row.id,
                    "endpoint_id": row.endpoint_id,
                    "event_id": row.event_id,
                    "payment_id": repository.event_payment_id(session, row.event_id),
                    "reason": why,
                },
            )
            return
        at = min(until, found.give_up_at)
        repository.finish_attempt(
            session, row.id, {"next_attempt_at": at, "last_error": f"endpoint {why}"}
        )
        wakeups.note_due(session, at, self.name)

    def _lost(self, row: DeliveryLease) -> None:
        with self._lock:
            payment_id = self._payments.pop(row.id, None)
        log.info(
            "delivery result after its lease was lost",
            extra={
                "delivery_id": row.id,
                "endpoint_id": row.endpoint_id,
                "event_id": row.event_id,
                "payment_id": payment_id,
            },
        )


def _switched_off(found: Row[Any]) -> str | None:
    """Say why an endpoint gets nothing more (deleted, disabled), or None when it is on."""
    if found.deleted_at is not None:
        return "endpoint deleted"
    if found.endpoint_status != "enabled":
        return f"endpoint disabled: {found.disabled_reason or 'by the merchant'}"
    return None


def _signal(result: Result) -> Signal:
    """What an attempt tells the endpoint's breaker: 5xx, 429 and no answer count."""
    if isinstance(result, Skipped):
        return Signal.SUCCESS
    code = result.status_code
    if code is None or code == 429 or code >= 500:
        return Signal.FAILURE
    return Signal.SUCCESS


def _label(result: Result) -> str:
    if isinstance(result, Skipped):
        return "skipped"
    code = result.status_code
    if code is None:
        return "error"
    return f"{code // 100}xx"


def _describe(result: Result) -> str:
    if isinstance(result, Skipped):
        return ""
    return describe_failure(result) or ""
