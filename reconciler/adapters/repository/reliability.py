"""Webhook reliability counts: add a batch of increments, read a window back, prune."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from reconciler.adapters.models import WebhookDelay, WebhookTally
from reconciler.adapters.repository._common import dialect

tallies_table = cast(Table, WebhookTally.__table__)
delays_table = cast(Table, WebhookDelay.__table__)

TALLY_COLUMNS = (
    "received",
    "duplicates",
    "out_of_order",
    "bad_signatures",
    "by_webhook",
    "polled_first",
    "late",
)
DELAY_COLUMNS = ("count", "terminal", "late")

TallyKey = tuple[str, str, datetime]  # account key, event type, minute
DelayKey = tuple[str, str, datetime, int]  # account key, event type, slot, bucket


def add_tallies(session: Session, rows: Mapping[TallyKey, Mapping[str, int]]) -> None:
    """Add per-minute counts to what is stored (one upsert for the batch)."""
    values = [
        {
            "account_key": key,
            "event_type": event_type,
            "minute": minute,
            **{name: counts.get(name, 0) for name in TALLY_COLUMNS},
        }
        for (key, event_type, minute), counts in rows.items()
    ]
    _upsert(session, tallies_table, values, ("account_key", "event_type", "minute"), TALLY_COLUMNS)


def add_delays(session: Session, rows: Mapping[DelayKey, Mapping[str, int]]) -> None:
    """Add delay bucket counts to what is stored (one upsert for the batch)."""
    values = [
        {
            "account_key": key,
            "event_type": event_type,
            "slot": slot,
            "bucket": bucket,
            **{name: counts.get(name, 0) for name in DELAY_COLUMNS},
        }
        for (key, event_type, slot, bucket), counts in rows.items()
    ]
    _upsert(
        session,
        delays_table,
        values,
        ("account_key", "event_type", "slot", "bucket"),
        DELAY_COLUMNS,
    )


def _upsert(
    session: Session,
    table: Table,
    values: list[dict[str, Any]],
    keys: tuple[str, ...],
    counters: tuple[str, ...],
) -> None:
    if not values:
        return
    insert = postgresql.insert if dialect(session) == "postgresql" else sqlite.insert
    # Sorted by key: two replicas flushing at once lock the same rows in the same order.
    values.sort(key=lambda row: tuple(row[k] for k in keys))
    statement = insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: table.c[name] + statement.excluded[name] for name in counters},
    )
    session.execute(statement, values)


def tallies_since(session: Session, account_key: str, since: datetime) -> dict[str, dict[str, int]]:
    """Sum an account's counts per event type from `since` on."""
    t = tallies_table.c
    rows = session.execute(
        select(t.event_type, *(func.sum(t[name]).label(name) for name in TALLY_COLUMNS))
        .where(t.account_key == account_key, t.minute >= since)
        .group_by(t.event_type)
    )
    return {
        row.event_type: {name: int(getattr(row, name) or 0) for name in TALLY_COLUMNS}
        for row in rows
    }


def delays_since(
    session: Session, account_key: str, since: datetime
) -> dict[str, dict[str, dict[int, int]]]:
    """Sum an account's delay buckets per event type from `since` on.

    Returns {event type: {"count" | "terminal" | "late": {bucket: n}}}.
    """
    d = delays_table.c
    rows = session.execute(
        select(d.event_type, d.bucket, *(func.sum(d[name]).label(name) for name in DELAY_COLUMNS))
        .where(d.account_key == account_key, d.slot >= since)
        .group_by(d.event_type, d.bucket)
    )
    out: dict[str, dict[str, dict[int, int]]] = {}
    for row in rows:
        kinds = out.setdefault(row.event_type, {name: {} for name in DELAY_COLUMNS})
        for name in DELAY_COLUMNS:
            if n := int(getattr(row, name) or 0):
                kinds[name][int(row.bucket)] = n
    return out


def delay_series(
    session: Session, account_key: str, since: datetime
) -> dict[datetime, dict[int, int]]:
    """Return an account's delay buckets per slot from `since` on (every event type)."""
    d = delays_table.c
    rows = session.execute(
        select(d.slot, d.bucket, func.sum(d["count"]).label("n"))
        .where(d.account_key == account_key, d.slot >= since)
        .group_by(d.slot, d.bucket)
    )
    series: dict[datetime, dict[int, int]] = {}
    for row in rows:
        series.setdefault(row.slot, {})[int(row.bucket)] = int(row.n or 0)
    return series


def prune_reliability(session: Session, before: datetime) -> int:
    """Delete counts older than `before`; return how many rows went."""
    gone = session.execute(delete(tallies_table).where(tallies_table.c.minute < before))
    more = session.execute(delete(delays_table).where(delays_table.c.slot < before))
    return int(getattr(gone, "rowcount", 0) or 0) + int(getattr(more, "rowcount", 0) or 0)
