"""Several `reconciler serve` replicas on one PostgreSQL: one is killed, nothing is polled twice.

Three replicas sweep one table while the simulator loses most webhooks and fails some
calls; a thousand payments are registered through their APIs; one replica is SIGKILLed
in the middle (its leases go stale with it) and a fourth one starts. Every payment must
reach the simulator's ground truth, and the simulator's call log must show no payment
fetched by two callers at once and none fetched more often than its schedule allows.
Run with `pytest -s` to see the figures.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
import requests
from support.app import SIM_SECRET
from support.postgres import PostgresServer
from support.simulator import Simulator, run_simulator

from reconciler.config import Settings
from reconciler.domain.policy import PollPolicy, max_polls

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(240)]

PAYMENTS = 1000
KILL_AFTER_S = 5.0
CONVERGE_WITHIN_S = 150.0
POLICY = PollPolicy(first_delay=1, base_delay=0.5, factor=2, max_delay=4, give_up_after=120)
SETTINGS = Settings(
    poll=POLICY,
    sweep_interval_s=0.3,
    sweep_batch_size=100,
    sweep_concurrency=8,
    lease_s=10,  # more than connect + read timeout below, as docs/scaling.md asks
    notify_timeout_s=4,  # a delivery must fit twice in the lease too
    connect_timeout_s=1,
    read_timeout_s=3,
    log_level="WARNING",
    threads=4,
)
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Replica:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL the whole replica (gunicorn master and workers) at once: a crash."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.name} ---\n" + "\n".join(text)


def start_replica(name: str, port: int, env: dict[str, str], tmp: Path) -> Replica:
    log_path = tmp / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler.entrypoints.cli", "serve", "--port", str(port)],
            cwd=tmp,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a kill takes the workers too
        )
    return Replica(name, port, process, log_path)


def wait_healthy(replica: Replica, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            raise AssertionError(f"{replica.name} exited\n{replica.log_tail()}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{replica.url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{replica.name} not healthy in {timeout} s\n{replica.log_tail()}")


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def polls_allowed(policy: PollPolicy, elapsed_s: float) -> int:
    """Most fetches the schedule allows within `elapsed_s` of creation (jitter keeps half)."""
    if elapsed_s < policy.first_delay:
        return 0
    spent, n = policy.first_delay, 1
    while True:
        spent += 0.5 * min(policy.max_delay, policy.base_delay * policy.factor ** (n - 1))
        if spent > elapsed_s:
            return n
        n += 1


def overlapping_fetches(calls: list[dict[str, Any]], now: datetime) -> int:
    """Count fetches that started before the previous one (in start order) had ended."""
    fetches = sorted(
        (when(c["started_at"]), when(c["ended_at"]) if c["ended_at"] else now)
        for c in calls
        if c["kind"] == "fetch"
    )
    overlaps, latest_end = 0, None
    for start, end in fetches:
        if latest_end is not None and start < latest_end:
            overlaps += 1
        latest_end = end if latest_end is None else max(latest_end, end)
    return overlaps


def db_statuses(conninfo: str) -> dict[str, str]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT gateway_payment_id, status FROM payments").fetchall()
    return {gid: status for gid, status in rows}


def test_replicas_share_the_sweep_without_double_polls(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    database_url = pg_server.create_database()
    conninfo = pg_server.conninfo(database_url.rsplit("/", 1)[1])
    ports = [free_port() for _ in range(4)]
    replicas: list[Replica] = []
    with run_simulator(
        seed=6,
        settle_min=1,
        settle_max=15,
        webhook_url=f"http://127.0.0.1:{ports[0]}/webhooks/simulator",
        webhook_secret=SIM_SECRET,
        webhook_loss=0.9,
        p_5xx=0.05,
        latency_min=0.002,
        latency_max=0.02,
    ) as sim:
        env = {
            **SETTINGS.child_env(
                database_url=database_url,
                simulator_url=sim.url,
                simulator_webhook_secret=(SIM_SECRET,),
            ),
            "PYTHONUNBUFFERED": "1",
        }
        try:
            # Three replicas start at once: they race to migrate the empty database.
            for n in range(3):
                replicas.append(start_replica(f"replica-{n + 1}", ports[n], env, tmp_path))
            for replica in replicas:
                wait_healthy(replica)
            api_key = create_merchant(env, tmp_path)
            started = time.monotonic()
            registered = register_payments(sim, replicas, api_key)
            registered_s = time.monotonic() - started

            time.sleep(max(0.0, KILL_AFTER_S - registered_s))
            victim = replicas[1]
            victim.kill()
            killed_at = time.monotonic()
            leased_at_kill = leases_by_owner(conninfo)
            replicas.append(start_replica("replica-4", ports[3], env, tmp_path))
            wait_healthy(replicas[-1])

            converged_s, mismatched = wait_for_truth(sim, conninfo, started)
            assert not mismatched, (
                f"{len(mismatched)} payments never reached the ground truth, e.g. "
                f"{sorted(mismatched.items())[:5]}\n" + "\n".join(r.log_tail() for r in replicas)
            )
            report(
                sim,
                conninfo,
                registered,
                registered_s,
                converged_s,
                killed_at,
                leased_at_kill,
            )
        finally:
            for replica in replicas:
                replica.kill()


def create_merchant(env: dict[str, str], tmp: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "reconciler.entrypoints.cli", "merchant", "create", "acme"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def register_payments(sim: Simulator, replicas: list[Replica], api_key: str) -> dict[str, str]:
    """Create payments at the simulator, then register them round-robin; gateway id -> ours."""
    headers = {"Authorization": f"Bearer {api_key}"}
    local = requests.Session()

    def one(n: int) -> tuple[str, str]:
        # Both calls are idempotent, so a connection reset under load is simply retried.
        gateway_payment = retried(
            lambda: sim.create(
                amount=1000 + n, currency="EUR", reference=f"order-{n}", idempotency_key=f"k{n}"
            )
        )
        replica = replicas[n % len(replicas)]
        response = retried(
            lambda: local.post(
                f"{replica.url}/v1/payments",
                json={
                    "merchant_reference": f"order-{n}",
                    "gateway": "simulator",
                    "amount": 1000 + n,
                    "currency": "EUR",
                    "gateway_payment_id": gateway_payment["id"],
                },
                headers=headers,
                timeout=30,
            )
        )
        assert response.status_code in (200, 201), response.text
        return gateway_payment["id"], response.json()["id"]

    with ThreadPoolExecutor(12) as pool:
        return dict(pool.map(one, range(PAYMENTS)))


T = TypeVar("T")


def retried(call: Callable[[], T], attempts: int = 3) -> T:
    for attempt in range(attempts):
        try:
            return call()
        except requests.ConnectionError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def leases_by_owner(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT lease_owner, count(*) FROM payments WHERE lease_owner IS NOT NULL "
            "GROUP BY lease_owner"
        ).fetchall()
    return dict(rows)


def wait_for_truth(
    sim: Simulator, conninfo: str, started: float
) -> tuple[float, dict[str, tuple[str, str]]]:
    """Wait until every payment's status is the simulator's final one; (seconds, mismatches)."""
    deadline = started + CONVERGE_WITHIN_S
    mismatched: dict[str, tuple[str, str]] = {}
    while time.monotonic() < deadline:
        truth = sim.truth()["payments"]
        ours = db_statuses(conninfo)
        mismatched = {
            gid: (ours.get(gid, "missing"), t["final_status"])
            for gid, t in truth.items()
            if ours.get(gid) != t["final_status"]
        }
        if not mismatched:
            return time.monotonic() - started, {}
        time.sleep(1)
    return time.monotonic() - started, mismatched


def report(
    sim: Simulator,
    conninfo: str,
    registered: dict[str, str],
    registered_s: float,
    converged_s: float,
    killed_at: float,
    leased_at_kill: dict[str, int],
) -> None:
    calls = sim.calls()
    truth = sim.truth()
    now = when(truth["now"])
    per_payment: dict[str, list[dict[str, Any]]] = calls["payments"]
    assert set(per_payment) == set(registered)
    ceiling = max_polls(POLICY)
    duplicates = {gid: overlapping_fetches(c, now) for gid, c in per_payment.items()}
    fetches = {gid: sum(1 for c in cs if c["kind"] == "fetch") for gid, cs in per_payment.items()}
    over_schedule = {}
    for gid, cs in per_payment.items():
        starts = [when(c["started_at"]) for c in cs if c["kind"] == "fetch"]
        if starts:
            created = when(truth["payments"][gid]["created_at"])
            # 1 ms of slack for the two processes' clocks reading the same wall clock.
            elapsed = (max(starts) - created).total_seconds() + 0.001
            if len(starts) > polls_allowed(POLICY, elapsed):
                over_schedule[gid] = (len(starts), polls_allowed(POLICY, elapsed), elapsed)
    with psycopg.connect(conninfo) as conn:
        outcomes = dict(
            conn.execute("SELECT outcome, count(*) FROM payment_events GROUP BY outcome").fetchall()
        )
        heartbeats = conn.execute(
            "SELECT owner FROM sweep_heartbeats ORDER BY finished_at"
        ).fetchall()
    # The victim's heartbeat stopped at the kill: it is the oldest one.
    victim_owner = heartbeats[0][0] if heartbeats else None
    webhooks = sim.webhooks()
    figures = {
        "payments": len(registered),
        "replicas": f"3 at start, 1 SIGKILLed after {KILL_AFTER_S:.0f} s, 1 started (4 in all)",
        "kills": 1,
        "sweepers that recorded a heartbeat": len(heartbeats),
        "leases the victim held when killed": leased_at_kill.get(victim_owner or "", 0),
        "registration (s)": round(registered_s, 1),
        "time to converge from first registration (s)": round(converged_s, 1),
        "time to converge after the kill (s)": round(time.monotonic() - killed_at, 1),
        "fetch calls": sum(fetches.values()),
        "calls by answer": calls["totals"]["by_answer"],
        "max fetches for one payment": max(fetches.values()),
        "max_polls(policy)": ceiling,
        "duplicate (overlapping) polls": sum(duplicates.values()),
        "payments polled beyond their schedule": len(over_schedule),
        "events by outcome": outcomes,
        "webhooks": webhooks["totals"],
    }
    print("\nmulti-replica run:")
    for name, value in figures.items():
        print(f"  {name}: {value}")
    assert len(heartbeats) == 4, "every replica, the victim included, should have swept"
    assert sum(duplicates.values()) == 0, {g: n for g, n in duplicates.items() if n}
    assert max(fetches.values()) <= ceiling
    assert not over_schedule, sorted(over_schedule.items())[:5]
