"""How the service is doing: readiness for load balancers, table gauges for metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reconciler.adapters import db, repository
from reconciler.adapters.gateways.razorpay import WAITING_ORDER_STATUSES
from reconciler.adapters.gateways.stripe import WAITING_STATUSES
from reconciler.services.context import Context

# Gateway statuses of payments waiting for their customer: not late, abandoned in time.
WAITING = {"stripe": WAITING_STATUSES, "razorpay": WAITING_ORDER_STATUSES}


@dataclass(frozen=True)
class Readiness:
    """Whether the database takes writes now (`problem` says why not) and the last sweep."""

    problem: str | None
    last_sweep_at: datetime | None = None


@dataclass(frozen=True)
class TableStats:
    """Gauges read from the payments table."""

    by_sync_state: dict[str, int]
    due: int
    oldest_pending_created_at: datetime | None
    abandoned: dict[str, int]  # payments canceled as abandoned, by gateway


def readiness(ctx: Context) -> Readiness:
    """Try a write that is rolled back: proves the locks and the file take writes."""
    changed = db.file_problem(ctx.engine)
    if changed is not None:
        return Readiness(problem=changed)
    session = ctx.sessions()
    try:
        last = repository.last_sweep_at(session)
        repository.probe_write(session, ctx.clock())
    except db.TROUBLE as exc:
        return Readiness(problem=f"error: {db.describe(exc)}")
    finally:
        session.rollback()
        session.close()
    return Readiness(problem=None, last_sweep_at=last)


def table_stats(ctx: Context, now: datetime) -> TableStats:
    """Count payments by sync state, the due backlog and the oldest pending payment."""
    with ctx.read() as session:
        return TableStats(
            by_sync_state=repository.count_by_sync_state(session),
            due=repository.due_backlog(session, now),
            oldest_pending_created_at=repository.oldest_pending_created_at(session, WAITING),
            abandoned=repository.count_abandoned(session),
        )
