"""Call economy: one population reconciled three ways, gateway calls and staleness compared.

1. hybrid      the service with webhooks (20 % of them lost) and its backoff polls;
2. naive       a fixed-interval poller: every payment fetched every 5 s until terminal;
3. poll-only   the service with the same backoff policy, the gateway sending no webhooks.

Same simulator seed and settlement distribution for all three. The service's poll policy
is the production shape scaled down to the population's time scale (see POLICY).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from bench.common import ratio, say
from bench.cpu import cpu_seconds
from reconciler.adapters.gateways.base import CreateRequest, GatewayError
from reconciler.adapters.gateways.simulator import SimulatorGateway
from reconciler.adapters.gateways.transport import HttpClient
from reconciler.config import GatewayConfig
from reconciler.demo.profile import Profile
from reconciler.demo.scoring import collect, parse_time, score, summary
from reconciler.demo.stack import Stack, run_stack
from reconciler.demo.traffic import create_payments, wait_settled

SEED = 20261128
NAIVE_INTERVAL_S = 5.0
# Production defaults are 30 s / 30 s / x2 / 1 h for payments settling in seconds to
# minutes; here payments settle in 1..15 s, so the policy is scaled to that.
POLICY = {"first_delay_s": 5.0, "base_delay_s": 5.0, "max_delay_s": 20.0}


FAILED_SHARE = 0.08  # issue 13: the poll-only run with 8 % of calls failing


def _profile(
    payments: int, *, webhooks: bool, p_5xx: float = 0.0, retry_first_s: float = 1.0
) -> Profile:
    return Profile(
        payments=payments,
        seed=SEED,
        settle_min_s=1.0,
        settle_max_s=15.0,
        webhook_loss=0.2,
        webhook_duplicate=0.0,
        webhook_reorder=0.0,
        p_5xx=p_5xx,
        retry_first_s=retry_first_s,
        webhooks=webhooks,
        outage_s=0.0,
        timeout_s=180.0,
        **POLICY,
    )


def _service_run(payments: int, *, webhooks: bool, **faults: float) -> dict[str, Any]:
    profile = _profile(payments, webhooks=webhooks, **faults)
    with run_stack(profile) as stack:
        service = stack.processes[-1].pid
        started = time.monotonic()
        cpu = cpu_seconds([service])
        accepted = create_payments(stack, payments, 8, prefix="bench")
        wait_settled(stack, accepted, started + profile.timeout_s, started)
        cpu = cpu_seconds([service]) - cpu
        report = score(collect(stack, timelines=False))
    row = _row(report)
    # Registration, webhooks, polls and their storing: the service's whole work per payment.
    row["cpu_ms_per_payment"] = round(cpu / max(1, report["payments"]) * 1000, 2)
    calls = row["calls_per_payment"] * report["payments"]
    row["cpu_ms_per_call"] = round(cpu / max(1.0, calls) * 1000, 2)
    return row


def _row(report: dict[str, Any]) -> dict[str, Any]:
    calls = report["gateway_calls"]
    return {
        "payments": report["payments"],
        "converged": report["converged"],
        "wrong": report["wrong"],
        "calls_per_payment": calls["per_payment"],
        "polls_per_payment": calls["polls_per_payment"],
        "staleness_s": report["staleness_s"]["all"],
    }


def _naive_run(payments: int) -> dict[str, Any]:
    """Create at the simulator, then fetch every payment every 5 s until it is terminal."""
    profile = _profile(payments, webhooks=False)
    with run_stack(profile) as stack:  # the service idles: it has no payments
        return _naive(stack, payments)


def _naive(stack: Stack, payments: int) -> dict[str, Any]:
    http = HttpClient(pool_size=32)
    gateway = SimulatorGateway(
        GatewayConfig("simulator", api_base=stack.simulator_url),
        session=http,
        timeout=(3.05, 10.0),
        create_timeout=(3.05, 10.0),
        webhook_tolerance_s=300.0,
    )

    def create(i: int) -> tuple[str, float]:
        answer = gateway.create_payment(
            CreateRequest(
                amount=100 + (i * 7919) % 99_900,
                currency="USD",
                merchant_reference=f"naive-{i:06d}",
                idempotency_key=f"naive-{i:06d}",
            )
        )
        return answer.gateway_payment_id, time.monotonic()

    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(create, range(payments)))
    next_at = {gid: at + NAIVE_INTERVAL_S for gid, at in created}
    settled_at: dict[str, datetime] = {}
    status: dict[str, str] = {}
    lock = threading.Lock()

    def poll(gid: str) -> None:
        try:
            answer = gateway.fetch_payment(gid)
        except GatewayError:
            answer = None
        with lock:
            if answer is not None and answer.status.terminal:
                settled_at[gid] = datetime.now(UTC)
                status[gid] = answer.status.value
                next_at.pop(gid, None)
            else:
                next_at[gid] = time.monotonic() + NAIVE_INTERVAL_S

    deadline = time.monotonic() + 180
    with ThreadPoolExecutor(max_workers=16) as pool:
        while next_at and time.monotonic() < deadline:
            now = time.monotonic()
            with lock:
                due = [gid for gid, at in next_at.items() if at <= now]
                for gid in due:
                    next_at[gid] = float("inf")  # in flight
            list(pool.map(poll, due))
            time.sleep(0.05)
    http.close()
    truth = stack.sim("truth")["payments"]
    calls = stack.sim("calls")["totals"]
    stale = []
    wrong = sum(1 for gid, s in status.items() if s != truth[gid]["final_status"])
    for gid, at in settled_at.items():
        final = parse_time(truth[gid]["final_at"])
        assert final is not None
        stale.append((at - final).total_seconds())
    polls = calls["by_kind"].get("fetch", 0)
    return {
        "payments": payments,
        "converged": len(settled_at),
        "wrong": wrong,
        "calls_per_payment": round(calls["all"] / payments, 3),
        "polls_per_payment": round(polls / payments, 3),
        "staleness_s": summary(stale),
    }


def run(quick: bool) -> dict[str, Any]:
    payments = 100 if quick else 300
    rows: dict[str, Any] = {}
    say(f"economy: hybrid (webhooks, 20 % lost), {payments} payments...")
    rows["hybrid"] = _service_run(payments, webhooks=True)
    say("economy: naive fixed 5 s poller...")
    rows["naive_5s"] = _naive_run(payments)
    say("economy: poll-only exponential backoff (no webhooks)...")
    rows["poll_only_backoff"] = _service_run(payments, webhooks=False)
    say(f"economy: poll-only with {FAILED_SHARE:.0%} of calls failing, short retries on...")
    rows["poll_only_failing"] = _service_run(payments, webhooks=False, p_5xx=FAILED_SHARE)
    say("economy: the same, short retries off (a failure waits a whole step, as before)...")
    rows["poll_only_failing_no_short_retry"] = _service_run(
        payments, webhooks=False, p_5xx=FAILED_SHARE, retry_first_s=0.0
    )
    hybrid = rows["hybrid"]
    ratios = {}
    for q in ("p50", "p99"):
        ratios[f"staleness {q} failing: short retries/whole steps"] = ratio(
            rows["poll_only_failing"]["staleness_s"][q],
            rows["poll_only_failing_no_short_retry"]["staleness_s"][q],
        )
    for name in ("naive_5s", "poll_only_backoff"):
        other = rows[name]
        ratios[f"calls {name}/hybrid"] = ratio(
            other["calls_per_payment"], hybrid["calls_per_payment"]
        )
        ratios[f"polls {name}/hybrid"] = ratio(
            other["polls_per_payment"], hybrid["polls_per_payment"]
        )
        for q in ("p50", "p95", "p99"):
            ratios[f"staleness {q} {name}/hybrid"] = ratio(
                other["staleness_s"][q], hybrid["staleness_s"][q]
            )
    return {"payments": payments, "seed": SEED, "policy": POLICY, "runs": rows, "ratios": ratios}


def render(result: dict[str, Any]) -> str:
    lines = [
        f"call economy ({result['payments']} payments, seed {result['seed']}, "
        f"settle 1..15 s, policy {result['policy']})",
        f"  {'':<34}{'calls/pay':>10}{'polls/pay':>10}{'stale p50':>10}{'p95':>8}{'p99':>8}"
        f"{'ok':>6}{'wrong':>6}{'CPU ms/pay':>11}{'ms/call':>8}",
    ]
    for name, row in result["runs"].items():
        s = row["staleness_s"]
        lines.append(
            f"  {name:<34}{row['calls_per_payment']:>10.2f}{row['polls_per_payment']:>10.2f}"
            f"{_s(s['p50']):>10}{_s(s['p95']):>8}{_s(s['p99']):>8}"
            f"{row['converged']:>6}{row['wrong']:>6}"
            f"{_n(row.get('cpu_ms_per_payment')):>11}{_n(row.get('cpu_ms_per_call')):>8}"
        )
    for key, value in result["ratios"].items():
        lines.append(f"  ratio {key}: {value}")
    return "\n".join(lines)


def _n(value: float | None) -> str:
    # The naive poller runs inside the benchmark's own process: no service CPU to show.
    return "-" if value is None else f"{value:.2f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"
