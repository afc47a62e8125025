"""The status rules: how one report changes (or does not change) a payment's status.

Every report (webhook, poll, API, admin) is judged here and nowhere else. The rules are
a table keyed by (current status, reported status); time ordering only matters between
non-terminal reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self is not Status.PENDING


class SyncState(StrEnum):
    AWAITING_WEBHOOK = "awaiting_webhook"
    POLLING = "polling"
    SETTLED = "settled"
    GAVE_UP = "gave_up"
    NEEDS_REVIEW = "needs_review"


class Source(StrEnum):
    WEBHOOK = "webhook"
    POLL = "poll"
    API = "api"
    ADMIN = "admin"


class Outcome(StrEnum):
    APPLIED = "applied"  # status or gateway status moved
    UNCHANGED = "unchanged"  # the report confirms what we already know
    STALE = "stale"  # older than what we know, or non-terminal after terminal
    DUPLICATE = "duplicate"  # the same gateway event delivered again
    CONFLICT = "conflict"  # a terminal report contradicting another terminal one
    LATE_SUCCESS = "late_success"  # succeeded after failed/canceled: applied, flagged
    LOST_LEASE = "lost_lease"  # a poll answer that came back after its lease expired
    ORPHAN = "orphan"  # a webhook for a payment nobody registered (yet)
    ERROR = "error"  # a poll that failed (transport, not-found, auth)
    RESOLVED = "resolved"  # an operator cleared a review flag
    REGISTERED = "registered"  # the payment was registered (its first poll's delay, and why)


@dataclass(frozen=True)
class Report:
    """What a gateway said about a payment, already mapped to our status."""

    status: Status
    gateway_status: str
    occurred_at: datetime | None = None  # the gateway's own event time, when it gives one


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    status: Status  # the status after the report
    flag_review: bool = False
    reason: str = ""

    @property
    def moves(self) -> bool:
        """Whether the payment row takes the report's gateway status."""
        return self.outcome in (Outcome.APPLIED, Outcome.LATE_SUCCESS)


P, S, F, C = Status.PENDING, Status.SUCCEEDED, Status.FAILED, Status.CANCELED

# (current, reported) -> (outcome, flag for review). Pending -> pending is decided by time.
RULES: dict[tuple[Status, Status], tuple[Outcome, bool]] = {
    (P, S): (Outcome.APPLIED, False),
    (P, F): (Outcome.APPLIED, False),
    (P, C): (Outcome.APPLIED, False),
    (S, P): (Outcome.STALE, False),
    (F, P): (Outcome.STALE, False),
    (C, P): (Outcome.STALE, False),
    (S, S): (Outcome.UNCHANGED, False),
    (F, F): (Outcome.UNCHANGED, False),
    (C, C): (Outcome.UNCHANGED, False),
    # Captured money outranks everything: the merchant must never lose track of it.
    (F, S): (Outcome.LATE_SUCCESS, True),
    (C, S): (Outcome.LATE_SUCCESS, True),
    (S, F): (Outcome.CONFLICT, True),
    (S, C): (Outcome.CONFLICT, True),
    (F, C): (Outcome.CONFLICT, True),
    (C, F): (Outcome.CONFLICT, True),
}


def decide(
    current: Status,
    current_gateway_status: str | None,
    last_event_at: datetime | None,
    report: Report,
) -> Decision:
    """Judge one report against the payment's current status.

    A report older than the last applied one (by the gateway's own event time) is stale
    whatever it says, with one exception: money captured outranks everything, so a
    `succeeded` is never dropped as stale while the payment is not `succeeded`.
    """
    older = (
        report.occurred_at is not None
        and last_event_at is not None
        and report.occurred_at < last_event_at
    )
    captured = report.status is Status.SUCCEEDED and current is not Status.SUCCEEDED
    if older and not captured and report.status is not current:
        return Decision(Outcome.STALE, current, reason="older than the last applied report")
    if current is Status.PENDING and report.status is Status.PENDING:
        if older:
            return Decision(Outcome.STALE, current, reason="older than the last applied report")
        if report.gateway_status == current_gateway_status:
            return Decision(Outcome.UNCHANGED, current)
        return Decision(Outcome.APPLIED, current)
    outcome, flag = RULES[(current, report.status)]
    new_status = report.status if outcome in (Outcome.APPLIED, Outcome.LATE_SUCCESS) else current
    reason = {
        Outcome.STALE: f"non-terminal report after {current.value}",
        Outcome.CONFLICT: f"{report.status.value} reported after {current.value}",
        Outcome.LATE_SUCCESS: f"succeeded reported after {current.value}: captured money wins",
    }.get(outcome, "")
    return Decision(outcome, new_status, flag_review=flag, reason=reason)
