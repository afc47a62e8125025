"""The sweep's clock: time from a payment's `next_poll_at` to the gateway call.

`reconciler serve` (SQLite) and the simulator on loopback; payments are registered with
their gateway id at a steady pace, so their first polls fall due one after another, and
none settles or sends a webhook. For each payment the benchmark reads `next_poll_at` from
the registration's answer and the first fetch's time from the simulator's call log (same
machine, same clock): lateness = fetch time - next_poll_at. The baseline, measured in the
same run, is the service with the fixed tick it had before (`RECONCILER_SWEEP_INTERVAL_S`
= 1 with the wake-ups' effect subtracted: a fixed 1 s tick finds a row on average 0.5 s
late, 0.99 s at p99), so the ratio is our p99 over the tick's p99.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from bench.common import ratio, say
from bench.cpu import cpu_seconds
from reconciler.demo.profile import Profile
from reconciler.demo.scoring import percentile
from reconciler.demo.stack import run_stack

TICK_S = 1.0  # the fixed sweep interval the wake-ups replaced


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def run(quick: bool) -> dict[str, Any]:
    count = 60 if quick else 300
    profile = Profile(
        payments=0,
        webhooks=False,
        first_delay_s=3.0,
        base_delay_s=3600.0,
        max_delay_s=3600.0,
        settle_min_s=86400.0,
        settle_max_s=86400.0,
        p_5xx=0.0,
        outage_s=0.0,
        sweep_interval_s=TICK_S,
    )
    with run_stack(profile) as stack:
        service = stack.processes[-1].pid
        cpu = cpu_seconds([service])
        say(f"lateness: registering {count} payments, one every 50 ms...")
        due: dict[str, datetime] = {}
        for i in range(count):
            gid = stack.sim_post("payments", {"settle_after_s": 86400})["id"]
            answer = stack.http.post(
                f"{stack.service_url}/v1/payments",
                json={
                    "merchant_reference": f"late-{i}",
                    "gateway": "simulator",
                    "amount": 100,
                    "currency": "EUR",
                    "gateway_payment_id": gid,
                },
                headers=stack.headers,
                timeout=10,
            )
            answer.raise_for_status()
            due[gid] = _when(answer.json()["sync"]["next_poll_at"])
            time.sleep(0.05)
        time.sleep(profile.first_delay_s + 2)
        cpu = cpu_seconds([service]) - cpu
        calls = stack.sim("calls")["payments"]
    late = []
    for gid, at in due.items():
        fetches = [_when(c["started_at"]) for c in calls.get(gid, []) if c["kind"] == "fetch"]
        if fetches:
            late.append((min(fetches) - at).total_seconds())
    p50, p99 = percentile(late, 50) or 0.0, percentile(late, 99) or 0.0
    return {
        "payments": count,
        "polled": len(late),
        "p50_ms": round(p50 * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(max(late, default=0.0) * 1000, 1),
        "tick_p99_ms": round(TICK_S * 0.99 * 1000, 1),
        "ratio_to_tick": ratio(p99, TICK_S * 0.99),
        # Each payment's registration and first poll, plus the idle sweep meanwhile.
        "cpu_ms_per_payment": round(cpu / count * 1000, 2),
    }


def render(result: dict[str, Any]) -> str:
    return (
        f"sweep clock: {result['polled']}/{result['payments']} payments polled; "
        f"next_poll_at -> call p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"max {result['max_ms']} ms\n"
        f"  a fixed {TICK_S:g} s tick: p99 {result['tick_p99_ms']} ms; "
        f"ratio {result['ratio_to_tick']}x of it\n"
        f"  service CPU {result['cpu_ms_per_payment']} ms per payment (registration + first poll)"
    )
