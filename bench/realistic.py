"""Call economy on a realistic population, with the Celery + Redis baseline beside us.

The population is shaped like real payment traffic: settlement times log-normal (median
20 s, sigma 1.5: a tail into tens of minutes, clipped at 45 min), 80/15/5 % succeeded/
failed/canceled, arrivals spread evenly over 10 minutes, 20 % of webhooks lost. The
policy is production's default (first poll 30 s after creation, then 30 s x 2^n with
jitter, capped at 1 h). Four runs on the same simulator seed:

1. hybrid         `reconciler serve` with webhooks (20 % lost) and its backoff polls;
2. fixed 5 s      a loop that fetches every payment every 5 s until it is terminal;
3. poll-only      `reconciler serve` with the same policy, the gateway sending no webhooks;
4. celery         a Celery worker on Redis: a task creates the payment at the gateway, a
                  poll task fetches it and `retry(countdown=...)`s on the same policy
                  (bench/celery_app.py); skipped with a message when Celery or
                  redis-server is absent.

A real-time run would last over an hour, so time is compressed: every duration of the
population and of the policy is divided by `scale` (the service has no clock-rate
setting; the simulator's clock only jumps). Staleness is measured in real seconds and
multiplied back by `scale`, so it reads in production seconds; calls are unaffected.
CPU seconds are those of everything each alternative runs, measured from the first
creation until every payment is known settled: the service's processes (SQLite is
in-process) for ours, the Celery worker's processes and redis-server for Celery.
"""

from __future__ import annotations

import heapq
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench import celery_baseline
from bench.common import ratio, say
from bench.cpu import cpu_seconds
from reconciler.demo.profile import Profile
from reconciler.demo.scoring import ARRIVED, LOST, collect, parse_time, score, summary
from reconciler.demo.stack import Stack, run_stack
from reconciler.domain.policy import PollPolicy

SEED = 20261129
PRODUCTION = PollPolicy()  # 30 s, 30 s, x2, 1 h
MEDIAN_S, SIGMA = 20.0, 1.5
SETTLE_MIN_S, SETTLE_MAX_S = 1.0, 45 * 60.0
ARRIVAL_WINDOW_S = 600.0
WEBHOOK_LOSS = 0.2
FIXED_INTERVAL_S = 5.0
IDLE_S = 3.0  # real seconds of doing nothing, after a run, to measure the idle CPU
SWEEP_INTERVAL_S = 1.0  # RECONCILER_SWEEP_INTERVAL_S's default
SLACK_S = 2 * 3600.0  # production seconds after the last arrival before a run gives up
TERMINAL = ("succeeded", "failed", "canceled")


@dataclass(frozen=True)
class Plan:
    """One run's population and policy, with every duration compressed by `scale`."""

    payments: int
    scale: float  # production seconds per real second

    def real(self, seconds: float) -> float:
        """Return the real duration standing for `seconds` of production time."""
        return seconds / self.scale

    def policy(self) -> PollPolicy:
        """Return the production policy, compressed."""
        return PollPolicy(
            first_delay=self.real(PRODUCTION.first_delay),
            base_delay=self.real(PRODUCTION.base_delay),
            factor=PRODUCTION.factor,
            max_delay=self.real(PRODUCTION.max_delay),
            give_up_after=self.real(PRODUCTION.give_up_after),
        )

    def arrivals(self) -> list[float]:
        """Return when (real seconds after the start) each payment is created: evenly spread."""
        step = self.real(ARRIVAL_WINDOW_S) / self.payments
        return [i * step for i in range(self.payments)]

    def settle_faults(self) -> dict[str, float]:
        """Return the simulator settings (`POST /_sim/faults`) that draw the settle times."""
        return {
            "settle_median_s": self.real(MEDIAN_S),
            "settle_sigma": SIGMA,
            "settle_min_s": self.real(SETTLE_MIN_S),
            "settle_max_s": self.real(SETTLE_MAX_S),
        }

    def timeout(self) -> float:
        """Return the real seconds a run may last before it stops waiting."""
        return self.real(ARRIVAL_WINDOW_S + SLACK_S)

    def profile(self, *, webhooks: bool) -> Profile:
        """Return the stack's profile: faults, compressed policy, production sweep interval."""
        policy = self.policy()
        return Profile(
            payments=self.payments,
            seed=SEED,
            settle_min_s=self.real(SETTLE_MIN_S),
            settle_max_s=self.real(SETTLE_MAX_S),
            webhook_loss=WEBHOOK_LOSS,
            webhook_duplicate=0.0,
            webhook_reorder=0.0,
            p_5xx=0.0,
            webhooks=webhooks,
            outage_s=0.0,
            first_delay_s=policy.first_delay,
            base_delay_s=policy.base_delay,
            factor=policy.factor,
            max_delay_s=policy.max_delay,
            give_up_after_s=policy.give_up_after,
            # The production default (1 s), compressed like every other duration: it bounds
            # how late a poll can be when a wake-up is missed.
            sweep_interval_s=self.real(SWEEP_INTERVAL_S),
            timeout_s=self.timeout(),
        )

    def staleness(self, real_seconds: list[float]) -> dict[str, float | int | None]:
        """Summarise staleness samples taken in real seconds, in production seconds."""
        return summary([s * self.scale for s in real_seconds])


def paced(arrivals: list[float], started: float, create: Callable[[int], None]) -> None:
    """Call `create(i)` at `started + arrivals[i]` (at once when behind)."""
    for i, at in enumerate(arrivals):
        wait = started + at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        create(i)


def amount(i: int) -> int:
    """Return payment `i`'s amount in minor units (the same in every run)."""
    return 100 + (i * 7919) % 99_900


def _use_population(stack: Stack, plan: Plan) -> None:
    """Tell the stack's simulator to draw the plan's log-normal settle times."""
    stack.sim_post("faults", plan.settle_faults())


# -- ours --------------------------------------------------------------------------------------


def service_run(plan: Plan, *, webhooks: bool) -> dict[str, Any]:
    """Reconcile the population with `reconciler serve`; CPU of the service's processes."""
    with run_stack(plan.profile(webhooks=webhooks)) as stack:
        _use_population(stack, plan)
        service = stack.processes[-1].pid
        session = requests.Session()
        accepted = 0

        def create(i: int) -> None:
            nonlocal accepted
            body = {
                "merchant_reference": f"real-{i:06d}",
                "gateway": "simulator",
                "amount": amount(i),
                "currency": "USD",
            }
            response = session.post(
                f"{stack.service_url}/v1/payments", json=body, headers=stack.headers, timeout=30
            )
            accepted += response.status_code in (200, 201)

        cpu_before = cpu_seconds([service])
        started = time.monotonic()
        paced(plan.arrivals(), started, create)
        done = _wait(lambda: _settled_in_db(stack.workdir / "reconciler.db"), accepted, plan)
        cpu = cpu_seconds([service]) - cpu_before
        wall = time.monotonic() - started
        idle = idle_rate([service])
        session.close()
        report = score(collect(stack, timelines=False))
    samples = report["staleness_samples"]
    calls = report["gateway_calls"]
    return {
        "payments": report["payments"],
        "converged": report["converged"],
        "wrong": report["wrong"],
        "complete": done,
        "calls_per_payment": calls["per_payment"],
        "polls_per_payment": calls["polls_per_payment"],
        "staleness_s": plan.staleness(samples[ARRIVED] + samples[LOST]),
        "staleness_lost_webhook_s": plan.staleness(samples[LOST]),
        **cpu_figures(cpu, idle, wall, calls["total"]),
        "wall_s": round(wall, 1),
    }


def idle_rate(roots: list[int]) -> float:
    """Return the CPU seconds per second these processes use with nothing due."""
    before = cpu_seconds(roots)
    time.sleep(IDLE_S)
    return (cpu_seconds(roots) - before) / IDLE_S


def cpu_figures(cpu: float, idle: float, wall: float, calls: int) -> dict[str, float]:
    """Return the run's CPU seconds, its idle rate, and the CPU above idle per gateway call.

    Compression shortens a run's wall time, so a fixed idle cost (timers, heartbeats)
    weighs less than it would in real time; the part above idle does not depend on it.
    """
    busy = max(0.0, cpu - idle * wall)
    return {
        "cpu_s": round(cpu, 2),
        "idle_cpu_per_s": round(idle, 4),
        "busy_cpu_s": round(busy, 2),
        "busy_cpu_ms_per_call": round(1000 * busy / calls, 2) if calls else 0.0,
    }


def _settled_in_db(path: Path) -> int:
    """Count settled payments straight from the service's SQLite file (costs it nothing)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT count(*) FROM payments WHERE status != 'pending'").fetchone()
        return int(row[0])
    finally:
        db.close()


def _wait(count: Callable[[], int], expected: int, plan: Plan) -> bool:
    """Wait until `count()` reaches `expected` or the plan's timeout; True if it did."""
    deadline = time.monotonic() + plan.timeout()
    while time.monotonic() < deadline:
        try:
            if count() >= expected:
                return True
        except (sqlite3.Error, OSError):
            pass
        time.sleep(0.2)
    return False


# -- a fixed 5 s poller ------------------------------------------------------------------------


def fixed_run(plan: Plan) -> dict[str, Any]:
    """Create at the simulator, then fetch every payment every 5 s until it is terminal."""
    with run_stack(plan.profile(webhooks=False)) as stack:  # the service idles: no payments
        _use_population(stack, plan)
        return _fixed(stack, plan)


def _fixed(stack: Stack, plan: Plan) -> dict[str, Any]:
    local = threading.local()

    def http() -> requests.Session:
        session: requests.Session | None = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        return session

    interval = plan.real(FIXED_INTERVAL_S)
    due: list[tuple[float, str]] = []
    wake = threading.Condition()
    settled: dict[str, tuple[datetime, str]] = {}
    api = f"{stack.simulator_url}/v1/payments"

    def schedule(gid: str, at: float) -> None:
        with wake:
            heapq.heappush(due, (at, gid))
            wake.notify()

    def create(i: int) -> None:
        reference = f"fixed-{i:06d}"
        body = {"amount": amount(i), "currency": "USD", "reference": reference}
        response = http().post(api, json=body, headers={"Idempotency-Key": reference}, timeout=30)
        response.raise_for_status()
        schedule(response.json()["id"], time.monotonic() + interval)

    def poll(gid: str) -> None:
        try:
            response = http().get(f"{api}/{gid}", timeout=30)
            status = response.json().get("status") if response.status_code == 200 else None
        except requests.RequestException:
            status = None
        if status in TERMINAL:
            settled[gid] = (datetime.now(UTC), status)
        else:
            schedule(gid, time.monotonic() + interval)

    started = time.monotonic()
    creator = threading.Thread(target=paced, args=(plan.arrivals(), started, create), daemon=True)
    creator.start()
    deadline = started + plan.timeout()
    with ThreadPoolExecutor(max_workers=16) as pool:
        while time.monotonic() < deadline:
            with wake:
                if not due and not creator.is_alive() and len(settled) >= plan.payments:
                    break
                now = time.monotonic()
                if not due or due[0][0] > now:
                    wake.wait(timeout=(due[0][0] - now) if due else 0.5)
                    continue
                _, gid = heapq.heappop(due)
            pool.submit(poll, gid)
    wall = time.monotonic() - started
    truth = stack.sim("truth")["payments"]
    calls = stack.sim("calls")["totals"]
    stale, wrong = [], 0
    for gid, (at, status) in settled.items():
        wrong += status != truth[gid]["final_status"]
        final = parse_time(truth[gid]["final_at"])
        assert final is not None
        stale.append((at - final).total_seconds())
    return {
        "payments": plan.payments,
        "converged": len(settled),
        "wrong": wrong,
        "complete": len(settled) >= plan.payments,
        "calls_per_payment": round(calls["all"] / plan.payments, 3),
        "polls_per_payment": round(calls["by_kind"].get("fetch", 0) / plan.payments, 3),
        "staleness_s": plan.staleness(stale),
        "cpu_s": None,  # the loop runs inside the benchmark's own process
        "idle_cpu_per_s": None,
        "busy_cpu_s": None,
        "busy_cpu_ms_per_call": None,
        "wall_s": round(wall, 1),
    }


# -- Celery -----------------------------------------------------------------------------------


def celery_run(plan: Plan) -> dict[str, Any]:
    """Reconcile the population with the Celery worker; CPU of worker and broker."""
    with run_stack(plan.profile(webhooks=False)) as stack:  # the service idles: no payments
        _use_population(stack, plan)
        with celery_baseline.running(stack.simulator_url, plan.policy(), stack.workdir) as celery:
            roots = celery.pids()
            cpu_before = cpu_seconds(roots)
            started = time.monotonic()
            paced(plan.arrivals(), started, celery.create)
            done = _wait(celery.settled_count, plan.payments, plan)
            cpu = cpu_seconds(roots) - cpu_before
            wall = time.monotonic() - started
            idle = idle_rate(roots)
            settled = celery.settled()
        truth = stack.sim("truth")["payments"]
        calls = stack.sim("calls")["totals"]
    stale, wrong = [], 0
    for gid, (at, status) in settled.items():
        wrong += status != truth[gid]["final_status"]
        final = parse_time(truth[gid]["final_at"])
        assert final is not None
        stale.append((at - final).total_seconds())
    return {
        "payments": plan.payments,
        "converged": len(settled),
        "wrong": wrong,
        "complete": done,
        "calls_per_payment": round(calls["all"] / plan.payments, 3),
        "polls_per_payment": round(calls["by_kind"].get("fetch", 0) / plan.payments, 3),
        "staleness_s": plan.staleness(stale),
        **cpu_figures(cpu, idle, wall, calls["all"]),
        "wall_s": round(wall, 1),
    }


# -- the benchmark ----------------------------------------------------------------------------


def run(quick: bool) -> dict[str, Any]:
    plan = Plan(payments=100, scale=60.0) if quick else Plan(payments=300, scale=20.0)
    rows: dict[str, Any] = {}
    say(f"economy-real: {plan.payments} payments, time compressed {plan.scale:g}x")
    say("economy-real: hybrid (webhooks, 20 % lost)...")
    rows["hybrid"] = service_run(plan, webhooks=True)
    say("economy-real: fixed 5 s poller...")
    rows["fixed_5s"] = fixed_run(plan)
    say("economy-real: poll-only backoff (no webhooks)...")
    rows["poll_only_backoff"] = service_run(plan, webhooks=False)
    skipped = celery_baseline.unavailable_reason()
    if skipped:
        say(f"economy-real: Celery baseline skipped: {skipped}")
    else:
        say("economy-real: Celery worker + Redis, retry(countdown=...)...")
        rows["celery"] = celery_run(plan)
    return {
        "payments": plan.payments,
        "scale": plan.scale,
        "seed": SEED,
        "population": {
            "settle_median_s": MEDIAN_S,
            "settle_sigma": SIGMA,
            "settle_clip_s": [SETTLE_MIN_S, SETTLE_MAX_S],
            "arrival_window_s": ARRIVAL_WINDOW_S,
            "webhook_loss": WEBHOOK_LOSS,
        },
        "policy": {
            "first_delay_s": PRODUCTION.first_delay,
            "base_delay_s": PRODUCTION.base_delay,
            "factor": PRODUCTION.factor,
            "max_delay_s": PRODUCTION.max_delay,
        },
        "runs": rows,
        "celery_skipped": skipped,
        "ratios": ratios(rows),
    }


def ratios(rows: dict[str, Any]) -> dict[str, float | None]:
    """Return every figure of the other runs as a ratio to the hybrid's (and to Celery's)."""
    out: dict[str, float | None] = {}
    hybrid = rows["hybrid"]
    for name, row in rows.items():
        if name == "hybrid":
            continue
        out[f"calls {name}/hybrid"] = ratio(row["calls_per_payment"], hybrid["calls_per_payment"])
        out[f"polls {name}/hybrid"] = ratio(row["polls_per_payment"], hybrid["polls_per_payment"])
        for q in ("p50", "p99"):
            out[f"staleness {q} {name}/hybrid"] = ratio(
                row["staleness_s"][q], hybrid["staleness_s"][q]
            )
    celery = rows.get("celery")
    if celery is not None:
        for name in ("hybrid", "poll_only_backoff"):
            row = rows[name]
            out[f"calls {name}/celery"] = ratio(
                row["calls_per_payment"], celery["calls_per_payment"]
            )
            for q in ("p50", "p99"):
                out[f"staleness {q} {name}/celery"] = ratio(
                    row["staleness_s"][q], celery["staleness_s"][q]
                )
            out[f"cpu {name}/celery"] = ratio(row["cpu_s"], celery["cpu_s"])
            out[f"busy cpu {name}/celery"] = ratio(row["busy_cpu_s"], celery["busy_cpu_s"])
    return out


def verdicts(rows: dict[str, Any]) -> list[str]:
    """Say whether the issue's two expectations hold in these figures."""
    lines = []
    hybrid, fixed = rows["hybrid"], rows["fixed_5s"]
    fewer = ratio(fixed["calls_per_payment"], hybrid["calls_per_payment"]) or 0.0
    sooner = (hybrid["staleness_s"]["p50"] or 0.0) < (fixed["staleness_s"]["p50"] or 0.0)
    fewer_polls = ratio(fixed["polls_per_payment"], hybrid["polls_per_payment"]) or 0.0
    lines.append(
        f"hybrid vs fixed 5 s: {fewer:.1f}x fewer calls (target >= 20x; {fewer_polls:.1f}x "
        f"fewer polls), median staleness "
        f"{'lower' if sooner else 'NOT lower'}: "
        f"{'MET' if fewer >= 20 and sooner else 'NOT MET'}"
    )
    celery = rows.get("celery")
    if celery is not None:
        for name in ("hybrid", "poll_only_backoff"):
            row = rows[name]
            mine = {
                "calls": row["calls_per_payment"],
                "p50": row["staleness_s"]["p50"],
                "p99": row["staleness_s"]["p99"],
                "cpu": row["cpu_s"],
            }
            theirs = {
                "calls": celery["calls_per_payment"],
                "p50": celery["staleness_s"]["p50"],
                "p99": celery["staleness_s"]["p99"],
                "cpu": celery["cpu_s"],
            }
            won = [k for k in mine if (mine[k] or 0) < (theirs[k] or 0)]
            tied = [k for k in mine if mine[k] == theirs[k]]
            lost = [k for k in mine if k not in won and k not in tied]
            lines.append(
                f"{name} vs celery: "
                + ("beats it on all of calls, p50, p99, CPU" if not lost and not tied else "")
                + (f"better on {won}" if lost or tied else "")
                + (f", equal on {tied}" if tied else "")
                + (f", worse on {lost}" if lost else "")
            )
    return lines


def render(result: dict[str, Any]) -> str:
    pop = result["population"]
    lines = [
        f"call economy, realistic population ({result['payments']} payments, seed "
        f"{result['seed']}, settle log-normal median {pop['settle_median_s']:g} s sigma "
        f"{pop['settle_sigma']:g}, {pop['webhook_loss']:.0%} webhooks lost, production policy; "
        f"time compressed {result['scale']:g}x, staleness in production seconds)",
        f"  {'':<20}{'calls/pay':>10}{'polls/pay':>10}{'stale p50':>11}{'p95':>9}{'p99':>9}"
        f"{'CPU s':>8}{'idle/s':>8}{'busy s':>8}{'ms/call':>8}{'ok':>6}{'wrong':>6}",
    ]
    for name, row in result["runs"].items():
        s = row["staleness_s"]
        lines.append(
            f"  {name:<20}{row['calls_per_payment']:>10.2f}{row['polls_per_payment']:>10.2f}"
            f"{_s(s['p50']):>11}{_s(s['p95']):>9}{_s(s['p99']):>9}"
            f"{_n(row['cpu_s'], 2):>8}{_n(row['idle_cpu_per_s'], 3):>8}"
            f"{_n(row['busy_cpu_s'], 2):>8}{_n(row['busy_cpu_ms_per_call'], 2):>8}"
            f"{row['converged']:>6}{row['wrong']:>6}"
        )
    if result["celery_skipped"]:
        lines.append(f"  celery baseline skipped: {result['celery_skipped']}")
    for key, value in result["ratios"].items():
        lines.append(f"  ratio {key}: {value}")
    lines += [f"  {line}" for line in verdicts(result["runs"])]
    return "\n".join(lines)


def _n(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"
