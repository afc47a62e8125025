"""Merchant notification delivery, the engine's second kind: one signed POST per attempt.

The breaker's target is the endpoint: each endpoint has its own breaker and a cap on
attempts in flight, so a slow or dead endpoint never takes the slots of a healthy one.
The pure decision is `domain.delivery.decide_delivery`; this module loads what to send,
sends it, and stores what the decision says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from reconciler.adapters import repository
from reconciler.adapters.notify.sender import Sender, new_sender
from reconciler.domain.delivery import (
    DeliveryOutcome,
    DeliveryRow,
    DeliveryStatus,
    decide_delivery,
    describe_failure,
)
from reconciler.services.context import Context
from reconciler.services.engine import TARGET_BUSY, Signal
from reconciler.services.notifications import delivery_job, disable_endpoint, store_attempt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryLease:
    """A delivery leased for one attempt."""

    id: str
    endpoint_id: str
    event_id: str


@dataclass(frozen=True)
class Skipped:
    """Nothing was sent: the delivery is no longer pending (delivered, failed, disabled)."""


Result = DeliveryOutcome | Skipped


class Deliveries:
    """Attempt due deliveries; the breaker's target is the endpoint."""

    name = "delivery"
    queue = repository.DELIVERIES

    def __init__(self, ctx: Context, sender: Sender | None = None) -> None:
        self.ctx = ctx
        notify = ctx.settings.notify
        self.settings = notify
        self.concurrency = notify.concurrency
        self.max_in_flight_per_target: int | None = notify.max_in_flight_per_endpoint
        self.sender = sender or new_sender(
            timeout_s=notify.timeout_s,
            allow_private=notify.allow_private,
            pool_maxsize=notify.concurrency,
        )

    def row(self, claimed: Row[Any]) -> DeliveryLease:
        return DeliveryLease(**claimed._mapping)

    def row_id(self, row: DeliveryLease) -> str:
        return row.id

    def target(self, row: DeliveryLease) -> str | None:
        return row.endpoint_id

    def call(self, row: DeliveryLease) -> Result:
        # Signatures carry the real time: a receiver refuses a webhook-timestamp far off.
        with self.ctx.read() as session:
            job = delivery_job(session, row.id, now=self.ctx.clock())
        if job is None:
            return Skipped()
        return self.sender.send(job.url, event_id=job.event_id, body=job.body, secrets=job.secrets)

    def signal(self, result: Result) -> Signal:
        if isinstance(result, Skipped):
            return Signal.SUCCESS
        code = result.status_code
        if code is None or code == 429 or code >= 500:
            return Signal.FAILURE
        return Signal.SUCCESS

    def label(self, result: Result) -> str:
        if isinstance(result, Skipped):
            return "skipped"
        code = result.status_code
        if code is None:
            return "error"
        return f"{code // 100}xx"

    def describe(self, result: Result) -> str:
        if isinstance(result, Skipped):
            return ""
        return describe_failure(result) or ""

    def store(self, session: Session, row: DeliveryLease, result: Result, now: datetime) -> None:
        delivery = repository.delivery_for_update(session, row.id)
        if delivery is None or isinstance(result, Skipped):
            return
        if delivery.status != DeliveryStatus.PENDING.value:
            return  # disabled or deleted while the attempt was out
        update = decide_delivery(
            DeliveryRow(delivery.attempts, delivery.last_delay_s, delivery.give_up_at),
            result,
            now=now,
            policy=self.settings.policy,
            rand=self.ctx.rand,
        )
        store_attempt(session, delivery, update, now=now)
        self._track_endpoint(session, delivery.endpoint_id, update.status, now)
        log.log(
            logging.INFO if update.status is not DeliveryStatus.FAILED else logging.WARNING,
            "delivery attempted",
            extra={
                "delivery_id": delivery.id,
                "endpoint_id": delivery.endpoint_id,
                "event_id": delivery.event_id,
                "attempt": update.attempts,
                "status": update.status.value,
                "response_status": update.last_response_status,
                "error": update.last_error,
                "duration_s": round(result.duration_s, 3),
            },
        )

    def _track_endpoint(
        self, session: Session, endpoint_id: str, status: DeliveryStatus, now: datetime
    ) -> None:
        """Note since when the endpoint has been failing; disable it after the period."""
        endpoint = repository.endpoint_for_update(session, endpoint_id)
        if endpoint is None or endpoint.status != "enabled":
            return
        if status is DeliveryStatus.DELIVERED:
            if endpoint.failing_since is not None:
                endpoint.failing_since = None
            return
        if endpoint.failing_since is None:
            endpoint.failing_since = now
        elif now - endpoint.failing_since >= timedelta(seconds=self.settings.disable_after_s):
            days = self.settings.disable_after_s / 86400
            reason = f"every delivery failed for {days:g} days"
            log.warning("endpoint disabled", extra={"endpoint_id": endpoint_id, "reason": reason})
            disable_endpoint(session, endpoint_id, reason=reason, now=now)

    def hold(
        self, session: Session, row: DeliveryLease, until: datetime, why: str, now: datetime
    ) -> None:
        delivery = repository.delivery_for_update(session, row.id)
        if delivery is None or delivery.status != DeliveryStatus.PENDING.value:
            return
        delivery.next_attempt_at = min(until, delivery.give_up_at)
        if why != TARGET_BUSY:
            delivery.last_error = f"endpoint {why}"

    def lost(self, session: Session, row: DeliveryLease, result: Result, now: datetime) -> None:
        log.info("delivery result after its lease was lost", extra={"delivery_id": row.id})
