"""Sweep cost vs table size: claim and reschedule 500 due payments among N rows.

Rows are bulk-inserted by one INSERT … SELECT (a recursive CTE on SQLite,
generate_series on PostgreSQL): all but 500 are settled (`next_poll_at` NULL), 500 are
due. Two timings, each the median of several repetitions, with the 500 made due again
(untimed) before each one:

- `claim`: `repository.claim_due(limit=500)` alone (one statement, one transaction);
- `sweep`: a full `Sweeper.sweep_once` against an in-process gateway that answers at
  once (claim, 500 answers stored row by row with their timeline events, reschedule).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from bench.common import median, postgres, ratio, say, timed
from reconciler.adapters import repository
from reconciler.adapters.gateways.base import (
    CreateRequest,
    GatewayPayment,
    InvalidSignature,
    WebhookEvent,
)
from reconciler.bootstrap import Context, bootstrap
from reconciler.config import Settings
from reconciler.domain.status import Status
from reconciler.entrypoints.commands import upgrade
from reconciler.services.sweep import Sweeper

DUE = 500
REPEAT = 5
CREATED = "2026-01-01 00:00:00.000000"
GIVE_UP = "2030-01-01 00:00:00.000000"
DUE_AT = "2026-01-02 00:00:00.000000"


class InstantGateway:
    """A gateway that answers every fetch at once: the payment is still processing."""

    name = "simulator"

    def create_payment(self, request: CreateRequest) -> GatewayPayment:
        return GatewayPayment(f"gw_{request.idempotency_key}", "processing", Status.PENDING)

    def fetch_payment(self, gateway_payment_id: str) -> GatewayPayment:
        return GatewayPayment(gateway_payment_id, "processing", Status.PENDING)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> WebhookEvent:
        raise InvalidSignature("not used in benchmarks")


def _seed(ctx: Context, rows: int, dialect: str) -> None:
    """Insert one merchant and `rows` payments, the first DUE of them due."""
    if dialect == "postgresql":
        series = f"SELECT generate_series(1, {rows}) AS n"
        ts = "::timestamptz"
        concat = "'{p}' || n"
    else:
        series = (
            f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {rows})"
            " SELECT n FROM seq"
        )
        ts = ""
        concat = "'{p}' || n"

    def ident(prefix: str) -> str:
        return concat.format(p=prefix)

    due_or_null = f"CASE WHEN n <= {DUE} THEN '{DUE_AT}'{ts} ELSE NULL END"
    status = f"CASE WHEN n <= {DUE} THEN 'pending' ELSE 'succeeded' END"
    state = f"CASE WHEN n <= {DUE} THEN 'polling' ELSE 'settled' END"
    settled = f"CASE WHEN n <= {DUE} THEN NULL ELSE '{CREATED}'{ts} END"
    with ctx.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO merchants (id, name, api_key_hash, created_at) "
                f"VALUES ('mer_bench', 'bench', 'x', '{CREATED}'{ts})"
            )
        )
        sql = f"""
            INSERT INTO payments (
                id, merchant_id, merchant_reference, request_fingerprint, gateway,
                gateway_payment_id, idempotency_key, amount, currency, status, gateway_status,
                created_at, updated_at, settled_at, sync_state, poll_attempts, next_poll_at,
                give_up_at, version)
            SELECT {ident("pay_")}, 'mer_bench', {ident("ref-")}, 'f', 'simulator',
                {ident("gw_")}, {ident("idem_")}, 1000, 'USD', {status}, 'processing',
                '{CREATED}'{ts}, '{CREATED}'{ts}, {settled}, {state}, 1, {due_or_null},
                '{GIVE_UP}'{ts}, 1
            FROM ({series}) AS s
        """
        conn.execute(text(sql))
        if dialect == "postgresql":
            conn.execute(text("ANALYZE payments"))
        else:
            conn.execute(text("ANALYZE"))


def _make_due(ctx: Context) -> None:
    due = datetime(2026, 1, 2, tzinfo=UTC)
    with ctx.sessions.begin() as session:
        session.execute(
            text(
                "UPDATE payments SET next_poll_at = :due, lease_owner = NULL, "
                "lease_expires_at = NULL WHERE next_poll_at IS NOT NULL"
            ),
            {"due": due.replace(tzinfo=None) if ctx.engine.dialect.name == "sqlite" else due},
        )


def _measure(url: str, rows: int) -> dict[str, Any]:
    upgrade(Settings(database_url=url))
    settings = Settings(database_url=url, sweep_batch_size=DUE, sweep_concurrency=8)
    ctx = bootstrap(settings, gateways={"simulator": InstantGateway()})
    try:
        _seed(ctx, rows, ctx.engine.dialect.name)
        now = datetime.now(UTC)

        def claim() -> None:
            with ctx.sessions.begin() as session:
                claimed = repository.claim_due(
                    session,
                    repository.PAYMENT_POLLS,
                    now=now,
                    limit=DUE,
                    owner="bench",
                    lease_until=now + timedelta(seconds=60),
                )
            assert len(claimed) == DUE, len(claimed)

        claim_s = timed(REPEAT, lambda: _make_due(ctx), claim)
        sweeper = Sweeper(ctx)
        cpu: list[float] = []
        try:

            def sweep() -> None:
                started = time.process_time()
                report = sweeper.sweep_once()
                cpu.append(time.process_time() - started)
                assert report.polled == DUE, report

            sweep_s = timed(REPEAT, lambda: _make_due(ctx), sweep)
        finally:
            sweeper.close()
        return {
            "rows": rows,
            "claim_ms": round(median(claim_s) * 1000, 2),
            "sweep_ms": round(median(sweep_s) * 1000, 1),
            # This process is the whole service side (PostgreSQL's own CPU is not counted).
            "cpu_ms_per_poll": round(median(cpu) / DUE * 1000, 3),
        }
    finally:
        ctx.close()


def run(quick: bool) -> dict[str, Any]:
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    out: dict[str, Any] = {"due": DUE, "repeat": REPEAT, "sqlite": [], "postgresql": []}
    tmp = tempfile.mkdtemp(prefix="bench-sweep-")
    try:
        for rows in sizes:
            say(f"sweep cost: SQLite, {rows} rows...")
            out["sqlite"].append(_measure(f"sqlite:///{os.path.join(tmp, f'{rows}.db')}", rows))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with postgres() as server:
        if server is not None:
            for rows in sizes:
                say(f"sweep cost: PostgreSQL, {rows} rows...")
                out["postgresql"].append(_measure(server.create_database(f"bench_{rows}"), rows))
    ratios = {}
    for backend in ("sqlite", "postgresql"):
        results = out[backend]
        if len(results) >= 2:
            small, large = results[0], results[-1]
            tag = f"{large['rows'] // 1000}k/{small['rows'] // 1000}k"
            ratios[f"{backend} claim {tag}"] = ratio(large["claim_ms"], small["claim_ms"])
            ratios[f"{backend} sweep {tag}"] = ratio(large["sweep_ms"], small["sweep_ms"])
    out["ratios"] = ratios
    return out


def render(result: dict[str, Any]) -> str:
    lines = [f"sweep cost vs table size ({result['due']} due, median of {result['repeat']})"]
    for backend in ("sqlite", "postgresql"):
        for row in result[backend]:
            lines.append(
                f"  {backend:<11}{row['rows']:>10} rows   claim_due {row['claim_ms']:>8.2f} ms"
                f"   sweep_once {row['sweep_ms']:>8.1f} ms"
                f"   service CPU {row['cpu_ms_per_poll']:.3f} ms per poll"
            )
    for key, value in result["ratios"].items():
        lines.append(f"  ratio {key}: {value}")
    return "\n".join(lines)
