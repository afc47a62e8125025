"""The delivery claim's order: round-robin across merchants, a cap on each one's in flight.

Oldest due first would hand every free slot to the merchant with the largest backlog (or
the most hostile endpoints, whose deliveries come back due again and again). Instead each
merchant's due deliveries are numbered oldest first (a window function), and rows are
taken by that turn: every merchant's oldest, then every merchant's second, and so on.
A merchant with `cap` deliveries already leased (in flight, on any replica) gets none,
and one with fewer gets only the difference, so one merchant can never hold more than
`cap` of the service's slots, however many endpoints it has.

The ranking reads every due, unleased delivery; the partial index on `next_attempt_at`
keeps that to the due rows, and the count of leased rows uses its own partial index.
On PostgreSQL the rows picked are then locked with `SKIP LOCKED`, re-checking their lease:
two sweepers that rank at once take disjoint rows (the loser gets fewer this tick).
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Select, Table, func, or_, select

from reconciler.adapters.models import WebhookEndpoint
from reconciler.adapters.repository._common import deliveries_table

endpoints_table = cast(Table, WebhookEndpoint.__table__)


def deliveries_round_robin(
    now: datetime, limit: int, *, skip_locked: bool, cap: int
) -> Select[tuple[str]]:
    """Select up to `limit` due, unleased deliveries, merchants in turn, each under `cap`."""
    d, e = deliveries_table, endpoints_table
    unleased = or_(d.c.lease_expires_at.is_(None), d.c.lease_expires_at < now)
    leased = (
        select(e.c.merchant_id, func.count().label("n"))
        .select_from(d.join(e, e.c.id == d.c.endpoint_id))
        .where(d.c.lease_owner.is_not(None), d.c.lease_expires_at >= now)
        .group_by(e.c.merchant_id)
        .subquery("leased")
    )
    turn = func.row_number().over(
        partition_by=e.c.merchant_id, order_by=(d.c.next_attempt_at, d.c.id)
    )
    ranked = (
        select(
            d.c.id,
            d.c.next_attempt_at.label("due"),
            turn.label("turn"),
            func.coalesce(leased.c.n, 0).label("busy"),
        )
        .select_from(
            d.join(e, e.c.id == d.c.endpoint_id).outerjoin(
                leased, leased.c.merchant_id == e.c.merchant_id
            )
        )
        .where(d.c.next_attempt_at <= now, unleased)
        .subquery("ranked")
    )
    picked = (
        select(ranked.c.id)
        .where(ranked.c.turn + ranked.c.busy <= cap)
        .order_by(ranked.c.turn, ranked.c.due)
        .limit(limit)
    )
    if not skip_locked:
        return picked
    # FOR UPDATE cannot sit beside a window function: lock the picked rows one level up.
    return (
        select(d.c.id)
        .where(d.c.id.in_(picked.scalar_subquery()), unleased)
        .with_for_update(skip_locked=True)
    )
