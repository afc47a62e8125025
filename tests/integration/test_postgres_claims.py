"""The claim on PostgreSQL: the partial index, SKIP LOCKED between sessions, leases, migrations."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker
from support.postgres import PostgresServer

from reconciler.adapters import repository
from reconciler.adapters.db import make_engine, make_sessionmaker
from reconciler.adapters.repository.fair_claims import deliveries_round_robin
from reconciler.entrypoints.commands import alembic_config

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url, pool_size=4)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


def seed(engine: Engine, *, total: int, due: int, not_due: int = 0) -> None:
    """Insert `total` payments: `due` due before NOW, `not_due` due later, the rest settled.

    One INSERT … SELECT generate_series, so twenty thousand rows take a fraction of a second.
    """
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO merchants (id, name, api_key_hash, created_at) "
                "VALUES ('mer_1', 'acme', 'hash', :now)"
            ),
            {"now": NOW},
        )
        conn.execute(
            text(
                """
                INSERT INTO payments (
                    id, merchant_id, merchant_reference, request_fingerprint, gateway,
                    gateway_payment_id, idempotency_key, amount, currency, status,
                    created_at, updated_at, sync_state, poll_attempts, next_poll_at,
                    give_up_at, version)
                SELECT
                    'pay_' || lpad(n::text, 8, '0'), 'mer_1', 'order-' || n, 'fp', 'simulator',
                    'sim_' || n, 'idem-' || n, 1000, 'USD',
                    CASE WHEN n <= :due + :not_due THEN 'pending' ELSE 'succeeded' END,
                    :now - interval '1 hour', :now,
                    CASE WHEN n <= :due + :not_due THEN 'polling' ELSE 'settled' END,
                    1,
                    CASE
                        WHEN n <= :due THEN :now - make_interval(secs => n)
                        WHEN n <= :due + :not_due THEN :now + make_interval(secs => n)
                    END,
                    :now + interval '3 days', 1
                FROM generate_series(1, :total) AS n
                """
            ),
            {"due": due, "not_due": not_due, "total": total, "now": NOW},
        )
        conn.execute(text("ANALYZE payments"))


def plan(engine: Engine, sql: str, params: Any) -> str:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN {sql}", params).all()
    return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_the_due_rows_query_uses_the_partial_index(engine: Engine) -> None:
    seed(engine, total=20_000, due=200, not_due=300)
    query = repository.due_query(NOW, 100, skip_locked=True)
    compiled = query.compile(dialect=engine.dialect)

    select_plan = plan(engine, str(compiled), compiled.params)

    assert "ix_payments_due" in select_plan, select_plan
    assert "Seq Scan" not in select_plan, select_plan


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_the_claim_statement_itself_uses_the_partial_index(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    seed(engine, total=20_000, due=200, not_due=300)
    issued: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE PAYMENTS"):
            issued.append((statement, params))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with sessions() as session, session.begin():
            claims = repository.claim_due(
                session,
                repository.PAYMENT_POLLS,
                now=NOW,
                limit=100,
                owner="a",
                lease_until=NOW + LEASE,
            )
            session.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert len(claims) == 100
    [(statement, params)] = issued

    claim_plan = plan(engine, statement, params)

    assert "ix_payments_due" in claim_plan, claim_plan


def claim(sessions: sessionmaker[Session], owner: str, limit: int, now: datetime = NOW) -> set[str]:
    with sessions.begin() as session:
        found = repository.claim_due(
            session,
            repository.PAYMENT_POLLS,
            now=now,
            limit=limit,
            owner=owner,
            lease_until=now + LEASE,
        )
    return {c.id for c in found}


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_claim_skips_rows_another_open_transaction_has_claimed(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    seed(engine, total=50, due=10)
    first_claimed = threading.Event()
    release = threading.Event()
    results: dict[str, set[str]] = {}

    def hold_open() -> None:
        with sessions.begin() as session:
            found = repository.claim_due(
                session,
                repository.PAYMENT_POLLS,
                now=NOW,
                limit=6,
                owner="a",
                lease_until=NOW + LEASE,
            )
            results["a"] = {c.id for c in found}
            first_claimed.set()
            # The transaction stays open, its row locks held, until the other one is done.
            assert release.wait(30)

    holder = threading.Thread(target=hold_open)
    holder.start()
    try:
        assert first_claimed.wait(30)
        results["b"] = claim(sessions, "b", limit=10)
    finally:
        release.set()
        holder.join(30)

    assert len(results["a"]) == 6
    # Without SKIP LOCKED b would block on a's rows (or, after a commits, find them leased).
    assert len(results["b"]) == 4
    assert results["a"].isdisjoint(results["b"])


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_concurrent_claimers_never_get_the_same_row(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    seed(engine, total=2_000, due=600)
    barrier = threading.Barrier(4)

    def claimer(owner: str) -> list[str]:
        barrier.wait(10)
        got: list[str] = []
        while True:
            batch = claim(sessions, owner, limit=7)
            if not batch:
                return got
            got.extend(batch)

    with ThreadPoolExecutor(4) as pool:
        per_owner = list(pool.map(claimer, ["a", "b", "c", "d"]))

    everything = [pid for got in per_owner for pid in got]
    assert len(everything) == len(set(everything)) == 600
    assert all(per_owner), "every claimer should have won some rows"


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_claim_ignores_live_leases_and_takes_expired_ones(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    seed(engine, total=30, due=9)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE payments SET lease_owner = 'dead', lease_expires_at = :at "
                "WHERE id IN ('pay_00000001', 'pay_00000002', 'pay_00000003')"
            ),
            {"at": NOW - timedelta(seconds=1)},  # expired: its sweeper died
        )
        conn.execute(
            text(
                "UPDATE payments SET lease_owner = 'alive', lease_expires_at = :at "
                "WHERE id IN ('pay_00000004', 'pay_00000005')"
            ),
            {"at": NOW + timedelta(seconds=1)},  # still held by a working sweeper
        )

    taken = claim(sessions, "new", limit=100)

    assert taken == {f"pay_{n:08d}" for n in (1, 2, 3, 6, 7, 8, 9)}
    with engine.connect() as conn:
        owners = dict(
            conn.execute(
                text("SELECT id, lease_owner FROM payments WHERE id <= 'pay_00000009'")
            ).all()
        )
    assert owners["pay_00000004"] == owners["pay_00000005"] == "alive"
    assert {owners[pid] for pid in taken} == {"new"}
    # Once the live leases expire they are fair game too.
    later = claim(sessions, "later", limit=100, now=NOW + timedelta(seconds=2))
    assert later == {"pay_00000004", "pay_00000005"}


@pytest.mark.timeout(120)
def test_replicas_migrating_at_once_leave_one_schema_at_head(pg_server: PostgresServer) -> None:
    url = pg_server.create_database()
    env = {"RECONCILER_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, "-m", "reconciler.entrypoints.cli", "db", "upgrade"]
    processes = [
        subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(3)
    ]
    outputs = []
    try:
        for process in processes:
            out, _ = process.communicate(timeout=90)
            outputs.append(out.decode(errors="replace"))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    assert [p.returncode for p in processes] == [0, 0, 0], "\n---\n".join(outputs)
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            tables = conn.execute(
                text("SELECT count(*) FROM pg_tables WHERE tablename = 'payments'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert [row[0] for row in versions] == [head]
    assert tables == 1


def seed_deliveries(engine: Engine, *, total: int, due: int, leased: int) -> None:
    """Two merchants, two endpoints each, `total` deliveries: `due` due, `leased` in flight,
    the rest delivered (one event per payment of `seed`)."""
    seed(engine, total=total, due=0)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO merchants (id, name, api_key_hash, created_at) "
                "VALUES ('mer_2', 'globex', 'hash2', :now)"
            ),
            {"now": NOW},
        )
        conn.execute(
            text(
                """
                INSERT INTO webhook_endpoints (
                    id, merchant_id, url, events, status, secret, created_at, updated_at)
                SELECT 'we_' || n, CASE WHEN n <= 2 THEN 'mer_1' ELSE 'mer_2' END,
                    'https://hooks.example/' || n, '["payment.succeeded"]', 'enabled',
                    'whsec_x', :now, :now
                FROM generate_series(1, 4) AS n
                """
            ),
            {"now": NOW},
        )
        conn.execute(
            text(
                """
                INSERT INTO notification_events (
                    id, payment_id, merchant_id, type, sequence, created_at, payload)
                SELECT 'evt_' || n, 'pay_' || lpad(n::text, 8, '0'), 'mer_1',
                    'payment.succeeded', 1, :now, '{}'
                FROM generate_series(1, :total) AS n
                """
            ),
            {"now": NOW, "total": total},
        )
        conn.execute(
            text(
                """
                INSERT INTO notification_deliveries (
                    id, event_id, endpoint_id, status, attempts, next_attempt_at,
                    created_at, give_up_at, lease_owner, lease_expires_at)
                SELECT 'dlv_' || n, 'evt_' || n, 'we_' || (1 + n % 4),
                    CASE WHEN n <= :due + :leased THEN 'pending' ELSE 'delivered' END, 0,
                    CASE WHEN n <= :due + :leased THEN :now - make_interval(secs => n) END,
                    :now - interval '1 hour', :now + interval '3 days',
                    CASE WHEN n > :due AND n <= :due + :leased THEN 'other' END,
                    CASE WHEN n > :due AND n <= :due + :leased THEN :now + interval '1 minute' END
                FROM generate_series(1, :total) AS n
                """
            ),
            {"now": NOW, "total": total, "due": due, "leased": leased},
        )
        conn.execute(text("ANALYZE notification_deliveries"))
        conn.execute(text("ANALYZE webhook_endpoints"))


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_the_fair_delivery_claim_reads_only_due_and_leased_rows(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    seed_deliveries(engine, total=20_000, due=200, leased=6)
    query = deliveries_round_robin(NOW, 16, skip_locked=True, cap=4)
    compiled = query.compile(dialect=engine.dialect)

    claim_plan = plan(engine, str(compiled), compiled.params)

    assert "ix_notification_deliveries_due" in claim_plan, claim_plan
    assert "ix_notification_deliveries_leased" in claim_plan, claim_plan
    assert "Seq Scan on notification_deliveries" not in claim_plan, claim_plan
    with sessions.begin() as session:
        queue = replace(repository.DELIVERIES, per_merchant_cap=4)
        claimed = repository.claim_due(
            session, queue, now=NOW, limit=16, owner="a", lease_until=NOW + LEASE
        )
    # Deliveries 201-206 are leased: three to each merchant's endpoints (mer_1 has we_1
    # and we_2), so each merchant gets one more under its cap of 4, whatever is due.
    by_endpoint = Counter(row.endpoint_id for row in claimed)
    mer_1 = by_endpoint["we_1"] + by_endpoint["we_2"]
    mer_2 = by_endpoint["we_3"] + by_endpoint["we_4"]
    assert (mer_1, mer_2, len(claimed)) == (1, 1, 2)
