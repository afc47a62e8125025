"""What a report must pass before the status rules: whose payment it is, and whether the
customer walked away.

- A gateway payment the service created carries its merchant's id in the gateway's
  metadata. On the shared `default` account a report tagged with another merchant is
  about someone else's payment: nothing of it may show (`foreign`).
- On the shared account a gateway payment without a tag belongs to the first merchant
  that registers it; another merchant registering it later gets a *shadow* row, which
  is polled like any other and shows what an unknown id shows (`hidden`) — unless a
  poll finds the payment tagged with the shadow's merchant: then that row tracks it
  (`claims`), and the other one becomes the shadow.
- A payment still waiting for its customer past `abandon_after` is abandoned: it is
  canceled with `cancel_reason = "abandoned"` instead of being polled until it gives up
  (`abandoned`). Which gateway statuses mean "waiting" is each adapter's mapping.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from reconciler.domain.policy import PollPolicy
from reconciler.domain.status import Report, Status

ABANDONED = "abandoned"
DEFAULT_ACCOUNT = "default"


class Row(Protocol):
    """What ownership reads of a payment row (a snapshot, an ORM row)."""

    @property
    def merchant_id(self) -> str: ...
    @property
    def gateway_account(self) -> str: ...
    @property
    def shadow(self) -> bool: ...


def foreign(gateway_account: str, merchant_id: str, owner: str | None) -> bool:
    """Say whether a report's tag names another merchant (on the shared account only)."""
    return gateway_account == DEFAULT_ACCOUNT and owner is not None and owner != merchant_id


def hidden(row: Row, owner: str | None) -> bool:
    """Say whether a report tagged `owner` must show nothing on this row.

    On the shared account a tag decides; without one, a shadow row is shown nothing.
    """
    if row.gateway_account == DEFAULT_ACCOUNT and owner is not None:
        return owner != row.merchant_id
    return bool(row.shadow)


def claims(row: Row, owner: str | None) -> bool:
    """Say whether a shadow row's merchant is the one the report's tag names (it owns it)."""
    return bool(row.shadow) and owner is not None and owner == row.merchant_id


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
