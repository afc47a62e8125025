"""Store the backoff policy's decision on a payment row (the policy itself stays pure)."""

from __future__ import annotations

import logging
from datetime import datetime

from reconciler.adapters.models import Payment
from reconciler.domain.policy import PollDecision, PollPolicy, Random, next_poll
from reconciler.domain.status import SyncState

log = logging.getLogger(__name__)


def reschedule(
    payment: Payment,
    *,
    policy: PollPolicy,
    now: datetime,
    retry_after: float | None,
    rand: Random,
) -> PollDecision:
    """Schedule the payment's next poll after an attempt, or give up at its deadline."""
    decision = next_poll(
        policy,
        attempt=payment.poll_attempts,
        previous_delay=payment.last_delay_s,
        now=now,
        give_up_at=payment.give_up_at,
        retry_after=retry_after,
        rand=rand,
    )
    payment.next_poll_at = decision.at
    if decision.gives_up:
        payment.sync_state = SyncState.GAVE_UP.value
        log.warning("gave up polling", extra={"payment_id": payment.id, "gateway": payment.gateway})
    else:
        payment.sync_state = SyncState.POLLING.value
        payment.last_delay_s = decision.delay
    return decision
