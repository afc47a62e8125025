"""What a report must pass before the status rules: whose payment it is, and whether the
customer walked away.

- A gateway payment the service created carries its merchant's id in the gateway's
  metadata. On the shared `default` account a report tagged with another merchant is
  about someone else's payment: nothing of it may show (`foreign`).
- A payment still waiting for its customer past `abandon_after` is abandoned: it is
  canceled with `cancel_reason = "abandoned"` instead of being polled until it gives up
  (`abandoned`). Which gateway statuses mean "waiting" is each adapter's mapping.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from reconciler.domain.policy import PollPolicy
from reconciler.domain.status import Report, Status

ABANDONED = "abandoned"
DEFAULT_ACCOUNT = "default"


def foreign(gateway_account: str, merchant_id: str, report: Report) -> bool:
    """Say whether the report's tag names another merchant (on the shared account only)."""
    return (
        gateway_account == DEFAULT_ACCOUNT
        and report.owner is not None
        and report.owner != merchant_id
    )


def abandon_at(created_at: datetime, policy: PollPolicy) -> datetime:
    """When a payment nobody pays is abandoned."""
    return created_at + timedelta(seconds=policy.abandon_after)


def abandoned(
    status: str, created_at: datetime, report: Report, policy: PollPolicy, now: datetime
) -> bool:
    """Say whether a report finds a pending payment waiting for its customer too long."""
    return (
        report.waiting
        and not report.status.terminal
        and status == Status.PENDING.value
        and now >= abandon_at(created_at, policy)
    )
