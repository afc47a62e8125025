"""The payment write path in Core: read a snapshot, store a change, append its rows.

A change is stored with one UPDATE that checks, in the same statement, that the row is
still what the decision read (its version) and, for the engine, still leased to this
sweeper. The timeline rows of a batch go in one INSERT; the notification events of a
batch in another, and each event's deliveries are one INSERT … SELECT from the merchant's
matching endpoints, so a merchant without endpoints costs no query to find that out.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    column,
    exists,
    func,
    insert,
    literal,
    not_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from reconciler.adapters.models import DEFAULT_ACCOUNT, Payment
from reconciler.adapters.repository._common import (
    deliveries_table,
    dialect,
    endpoints_table,
    events_table,
    payments_table,
    timeline_table,
)
from reconciler.domain.payment import MUTABLE_COLUMNS, SNAPSHOT_COLUMNS, Change, Snapshot

SNAPSHOT = tuple(payments_table.c[name] for name in SNAPSHOT_COLUMNS)

# One compiled UPDATE for every change: all mutable columns, the version checked and
# moved on, the lease checked and cleared when an owner is named.
_SET: dict[str, Any] = {name: bindparam(f"v_{name}") for name in MUTABLE_COLUMNS}
_STORE = (
    update(payments_table)
    .where(
        payments_table.c.id == bindparam("k_id"),
        payments_table.c.version == bindparam("k_version"),
    )
    .values(**_SET, version=payments_table.c.version + 1)
    .returning(payments_table.c.id)
)
_STORE_LEASED = (
    update(payments_table)
    .where(
        payments_table.c.id == bindparam("k_id"),
        payments_table.c.version == bindparam("k_version"),
        payments_table.c.lease_owner == bindparam("k_owner"),
    )
    .values(**_SET, version=payments_table.c.version + 1, lease_owner=None, lease_expires_at=None)
    .returning(payments_table.c.id)
)


def snapshot_of(row: Any) -> Snapshot:
    """Make a snapshot from a row that has every snapshot column (a claim's, a select's)."""
    mapping = row._mapping if hasattr(row, "_mapping") else row
    return Snapshot(**{name: mapping[name] for name in SNAPSHOT_COLUMNS})


_BY_ID = select(*SNAPSHOT).where(payments_table.c.id == bindparam("id"))
_BY_ID_LEASED = _BY_ID.where(payments_table.c.lease_owner == bindparam("owner"))
_BY_GATEWAY_ID = select(*SNAPSHOT).where(
    payments_table.c.gateway == bindparam("gateway"),
    payments_table.c.gateway_account == bindparam("gateway_account"),
    payments_table.c.gateway_payment_id == bindparam("gateway_payment_id"),
    not_(payments_table.c.shadow),  # the row that tracks it: shadows hear no webhook
)
# PostgreSQL locks the row it reads; SQLite's writer holds the database lock already.
_LOCKED = {id(stmt): stmt.with_for_update() for stmt in (_BY_ID, _BY_ID_LEASED, _BY_GATEWAY_ID)}


def lock_snapshot(
    session: Session, payment_id: str, *, owner: str | None = None
) -> Snapshot | None:
    """Read a payment and lock its row until the transaction ends.

    With `owner`, only while that sweeper still holds the row's lease.
    """
    if owner is None:
        return _read_locked(session, _BY_ID, {"id": payment_id})
    return _read_locked(session, _BY_ID_LEASED, {"id": payment_id, "owner": owner})


def payment_status(session: Session, payment_id: str) -> str | None:
    """The payment's status, or None when there is no such payment."""
    return session.scalar(select(payments_table.c.status).where(payments_table.c.id == payment_id))


def lock_snapshot_by_gateway_id(
    session: Session, gateway: str, gateway_payment_id: str, account: str = DEFAULT_ACCOUNT
) -> Snapshot | None:
    """Read the row that tracks a gateway account's payment, locking it until the end."""
    params = {
        "gateway": gateway,
        "gateway_account": account,
        "gateway_payment_id": gateway_payment_id,
    }
    return _read_locked(session, _BY_GATEWAY_ID, params)


def _read_locked(session: Session, stmt: Any, params: dict[str, Any]) -> Snapshot | None:
    if dialect(session) == "postgresql":
        stmt = _LOCKED[id(stmt)]
    row = session.connection().execute(stmt, params).first()
    return Snapshot(*row) if row is not None else None


def lock_gateway_payment(session: Session, gateway: str, gateway_payment_id: str) -> None:
    """Serialise, until commit, everyone who binds or looks up this gateway payment.

    A webhook for a payment not registered yet and that payment's registration would
    otherwise miss each other on PostgreSQL (neither sees the other's uncommitted row).
    SQLite's writers hold the database lock already.
    """
    if dialect(session) == "postgresql":
        session.execute(
            select(
                func.pg_advisory_xact_lock(
                    func.hashtextextended(literal(gateway + ":" + gateway_payment_id), 0)
                )
            )
        )


@dataclass(frozen=True)
class Stored:
    """A change to write; `owner` when it completes a lease (the engine's)."""

    change: Change
    owner: str | None = None


_SHADOW_OTHERS = (
    update(payments_table)
    .where(
        payments_table.c.gateway == bindparam("s_gateway"),
        payments_table.c.gateway_account == bindparam("s_gateway_account"),
        payments_table.c.gateway_payment_id == bindparam("s_gateway_payment_id"),
        payments_table.c.merchant_id != bindparam("s_merchant_id"),
        not_(payments_table.c.shadow),
    )
    .values(shadow=True, version=payments_table.c.version + 1)
)


def shadow_others(session: Session, row: Snapshot | Payment, gateway_payment_id: str) -> None:
    """Make shadows of other merchants' rows that track a gateway payment tagged for `row`'s.

    Before `row` tracks it: one row per account tracks a payment.
    """
    session.connection().execute(
        _SHADOW_OTHERS,
        {
            "s_gateway": row.gateway,
            "s_gateway_account": row.gateway_account,
            "s_gateway_payment_id": gateway_payment_id,
            "s_merchant_id": row.merchant_id,
        },
    )


def claimed(change: Change) -> bool:
    """Whether a change makes a shadow row track its payment (its merchant's tag proved it)."""
    return change.before.shadow and not change.after.shadow


def store_changes(session: Session, items: Sequence[Stored]) -> list[bool]:
    """Write each change's row if it is still as read (and still leased); say which were.

    On PostgreSQL a batch is one `UPDATE … FROM` a VALUES list of the new values and the
    checks (one round trip); SQLite, in-process, runs the one compiled UPDATE per row.
    """
    if not items:
        return []
    for item in items:
        row = item.change.before
        if claimed(item.change) and row.gateway_payment_id is not None:
            shadow_others(session, row, row.gateway_payment_id)
    connection = session.connection()
    if len(items) > 1 and dialect(session) == "postgresql":
        params = {
            f"p{index}_{name}": value
            for index, item in enumerate(items)
            for name, value in _keyed(item).items()
        }
        stored = {row[0] for row in connection.execute(_batch_statement(len(items)), params)}
        return [item.change.before.id in stored for item in items]
    return [
        # A change that moves nothing and releases no lease writes nothing: the caller
        # holds the row's lock, so the row is as read (a repeated report costs no UPDATE).
        (item.owner is None and not item.change.moved)
        or connection.execute(
            _STORE_LEASED if item.owner is not None else _STORE, _params(item)
        ).first()
        is not None
        for item in items
    ]


def _params(item: Stored) -> dict[str, Any]:
    change = item.change
    params: dict[str, Any] = {f"v_{name}": value for name, value in change.columns.items()}
    params["k_id"] = change.before.id
    params["k_version"] = change.before.version
    if item.owner is not None:
        params["k_owner"] = item.owner
    return params


_KEYS = ("k_id", "k_version", "k_owner")
_NAMES = (*_KEYS, *(f"v_{name}" for name in MUTABLE_COLUMNS))
_TYPES = {
    "k_id": payments_table.c.id.type,
    "k_version": payments_table.c.version.type,
    "k_owner": payments_table.c.lease_owner.type,
    **{f"v_{name}": payments_table.c[name].type for name in MUTABLE_COLUMNS},
}
# PostgreSQL types a VALUES list from its first row: say each column's type.
_PG_CASTS = {
    "k_id": "text",
    "k_version": "integer",
    "k_owner": "text",
    "v_poll_attempts": "integer",
    "v_poll_failures": "integer",
    "v_notification_sequence": "integer",
    "v_last_delay_s": "double precision",
    "v_shadow": "boolean",
    **{
        f"v_{name}": "timestamptz"
        for name in (
            "updated_at",
            "settled_at",
            "last_event_at",
            "next_poll_at",
            "last_polled_at",
            "give_up_at",
        )
    },
}


def _keyed(item: Stored) -> dict[str, Any]:
    values = _params(item)
    values.setdefault("k_owner", None)
    return values


@functools.lru_cache(maxsize=256)
def _batch_statement(size: int) -> Any:
    """The UPDATE for a batch of `size` rows, built once per size (its compiled form cached)."""
    rows: list[str] = []
    binds = []
    for index in range(size):
        cells = []
        for name in _NAMES:
            key = f"p{index}_{name}"
            binds.append(bindparam(key, type_=_TYPES[name]))
            cells.append(f"CAST(:{key} AS {_PG_CASTS.get(name, 'text')})")
        rows.append("(" + ", ".join(cells) + ")")
    assignments = ", ".join(f"{name} = v.v_{name}" for name in MUTABLE_COLUMNS)
    lease = (
        "lease_owner = CASE WHEN v.k_owner IS NULL THEN payments.lease_owner ELSE NULL END, "
        "lease_expires_at = CASE WHEN v.k_owner IS NULL "
        "THEN payments.lease_expires_at ELSE NULL END"
    )
    sql = (
        f"WITH v ({', '.join(_NAMES)}) AS (VALUES {', '.join(rows)}) "
        f"UPDATE payments SET {assignments}, {lease}, version = payments.version + 1 FROM v "
        "WHERE payments.id = v.k_id AND payments.version = v.k_version "
        "AND (v.k_owner IS NULL OR payments.lease_owner = v.k_owner) RETURNING payments.id"
    )
    return text(sql).bindparams(*binds)


_TIMELINE = insert(timeline_table)
_EVENTS = insert(events_table)


def append_timeline(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Append timeline rows (one INSERT for the batch)."""
    if rows:
        session.connection().execute(_TIMELINE, list(rows))


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert notification events (one INSERT for the batch)."""
    if rows:
        session.connection().execute(_EVENTS, list(rows))


def insert_deliveries_for(
    session: Session,
    *,
    event_id: str,
    event_type: str,
    merchant_id: str,
    now: datetime,
    first_attempt_at: datetime,
    give_up_at: datetime,
) -> None:
    """Give the event one due delivery per enabled endpoint of the merchant that wants it.

    A delivery's id is made from the event's and the endpoint's random parts, so the
    statement needs no round trip to learn which endpoints there are.
    """
    endpoint = endpoints_table.c
    delivery_id = literal("del_") + literal(event_id[4:16]) + func.substr(endpoint.id, 4, 12)
    chosen = select(
        delivery_id,
        literal(event_id),
        endpoint.id,
        literal("pending"),
        literal(0),
        literal(first_attempt_at, type_=deliveries_table.c.next_attempt_at.type),
        literal(now, type_=deliveries_table.c.created_at.type),
        literal(give_up_at, type_=deliveries_table.c.give_up_at.type),
    ).where(
        endpoint.merchant_id == merchant_id,
        endpoint.status == "enabled",
        endpoint.deleted_at.is_(None),
        _wants(session, event_type),
    )
    stmt = insert(deliveries_table).from_select(
        [
            "id",
            "event_id",
            "endpoint_id",
            "status",
            "attempts",
            "next_attempt_at",
            "created_at",
            "give_up_at",
        ],
        chosen,
    )
    session.execute(stmt)


def _wants(session: Session, event_type: str) -> ColumnElement[bool]:
    events = endpoints_table.c.events
    if dialect(session) == "postgresql":
        return events.cast(JSONB).has_key(event_type)  # type: ignore[no-any-return]
    member = (
        select(literal(1)).select_from(func.json_each(events)).where(column("value") == event_type)
    )
    return and_(exists(member))
