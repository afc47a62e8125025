"""Score a run against the simulator's ground truth, one report section per topic.

A payment whose terminal status differs from the gateway's is *wrong*. `score` builds the
report from section scorers (payments, gateway calls, polls, staleness, outage, webhooks),
each reading `Collected` and returning its part; a new topic is one more scorer here and
one more renderer in `report.py`.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from reconciler.demo.stack import Stack
from reconciler.demo.traffic import TERMINAL

OK, WRONG, UNSETTLED = 0, 1, 3  # exit codes: 2 is a usage or start-up error, 130 Ctrl-C
ARRIVED, LOST = "webhook_arrived", "webhook_lost"


def parse_time(value: str | None) -> datetime | None:
    """Parse an ISO 8601 time (`Z` or an offset) into an aware UTC datetime; None for none."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Return the q-th percentile (0..100), linear between closest ranks; None for no data."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """Return count, mean, p50/p95/p99 and max of a sample, rounded for display."""

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {
        "n": len(values),
        "mean": r(sum(values) / len(values)) if values else None,
        "p50": r(percentile(values, 50)),
        "p95": r(percentile(values, 95)),
        "p99": r(percentile(values, 99)),
        "max": r(max(values)) if values else None,
    }


@dataclass
class Collected:
    """Everything the scoring reads: our view, the gateway's truth, calls and webhooks."""

    ours: list[dict[str, Any]]
    truth: dict[str, Any]
    calls: dict[str, Any]
    webhooks: dict[str, Any]
    timelines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def collect(stack: Stack, *, timelines: bool = True) -> Collected:
    """Read both sides' final state (and every payment's timeline, in parallel)."""
    ours = stack.payments()
    events: dict[str, list[dict[str, Any]]] = {}
    if timelines:
        local = threading.local()

        def timeline(payment_id: str) -> tuple[str, list[dict[str, Any]]]:
            session: requests.Session | None = getattr(local, "session", None)
            if session is None:
                session = local.session = requests.Session()
            url = f"{stack.service_url}/v1/payments/{payment_id}/events"
            response = session.get(url, headers=stack.headers, timeout=30)
            response.raise_for_status()
            return payment_id, response.json()["data"]

        with ThreadPoolExecutor(max_workers=8) as pool:
            events = dict(pool.map(timeline, [p["id"] for p in ours]))
    return Collected(
        ours=ours,
        truth=stack.sim("truth")["payments"],
        calls=stack.sim("calls"),
        webhooks=stack.sim("webhooks"),
        timelines=events,
    )


def score(data: Collected, outage: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score a run: convergence, wrong payments, calls, staleness, outage, duplicates."""
    tally = _tally(data)
    fetches = sum(sum(v) for v in tally.polls.values())
    return {
        "payments": len(data.ours),
        "converged": tally.converged,
        "wrong": len(tally.wrong_ids),
        "wrong_ids": tally.wrong_ids[:20],
        "not_settled": tally.not_settled,
        "not_created_at_gateway": tally.not_created,
        "gateway_calls": _gateway_calls(data, fetches),
        "polls_per_payment": {k: summary(v) for k, v in tally.polls.items()},
        "staleness_s": {"all": summary(tally.stale[ARRIVED] + tally.stale[LOST])}
        | {k: summary(v) for k, v in tally.stale.items()},
        "outage": _outage(data, outage),
        "webhooks": _webhooks(data),
        "staleness_samples": tally.stale,
    }


def exit_code(report: dict[str, Any]) -> int:
    """Return 0 for a right run, 1 if any payment is wrong, 3 if some never settled."""
    if report["wrong"]:
        return WRONG
    if report["not_settled"] or report["not_created_at_gateway"]:
        return UNSETTLED
    return OK


@dataclass
class _Tally:
    """Each payment compared with the truth; polls and staleness by its webhook's fate."""

    converged: int = 0
    not_settled: int = 0
    not_created: int = 0
    wrong_ids: list[str] = field(default_factory=list)
    polls: dict[str, list[float]] = field(default_factory=lambda: {ARRIVED: [], LOST: []})
    stale: dict[str, list[float]] = field(default_factory=lambda: {ARRIVED: [], LOST: []})


def _tally(data: Collected) -> _Tally:
    delivered_terminal: set[str] = set()
    for d in data.webhooks["deliveries"]:
        if d["status"] in TERMINAL and isinstance(d["answer"], int) and 200 <= d["answer"] < 300:
            delivered_terminal.add(d["payment_id"])
    per_payment_calls: dict[str, list[dict[str, Any]]] = data.calls["payments"]
    tally = _Tally()
    for payment in data.ours:
        gid: str = payment.get("gateway_payment_id") or ""
        known = data.truth.get(gid)
        if known is None:
            tally.not_created += 1
            continue
        calls = per_payment_calls.get(gid, [])
        group = ARRIVED if gid in delivered_terminal else LOST
        tally.polls[group].append(sum(1 for c in calls if c["kind"] == "fetch"))
        status = payment["status"]
        if status in TERMINAL and status != known["final_status"]:
            tally.wrong_ids.append(payment["id"])
            continue
        if status not in TERMINAL:
            tally.not_settled += 1
            continue
        tally.converged += 1
        ours_at, final_at = parse_time(payment["settled_at"]), parse_time(known["final_at"])
        if ours_at is not None and final_at is not None:
            tally.stale[group].append((ours_at - final_at).total_seconds())
    return tally


def _gateway_calls(data: Collected, fetches: float) -> dict[str, Any]:
    totals = data.calls["totals"]
    count = max(1, len(data.ours))
    return {
        "total": totals["all"],
        "creates": totals["by_kind"].get("create", 0),
        "polls": totals["by_kind"].get("fetch", 0),
        "by_answer": totals["by_answer"],
        "per_payment": round(totals["all"] / count, 3),
        "polls_per_payment": round(fetches / count, 3),
    }


def _outage(data: Collected, outage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Count the gateway calls made during the outage window, if there was one."""
    if not outage or not outage.get("start"):
        return None
    start, end = parse_time(outage["start"]), parse_time(outage["end"])
    assert start is not None and end is not None
    calls = [c for calls in data.calls["payments"].values() for c in calls]
    calls += data.calls.get("unattributed", [])
    during = [c for c in calls if start <= (parse_time(c["started_at"]) or start) < end]
    return {
        "start": outage["start"],
        "duration_s": round((end - start).total_seconds(), 3),
        "calls": len(during),
        "answered_503": sum(1 for c in during if c["answer"] == 503),
    }


def _webhooks(data: Collected) -> dict[str, Any]:
    """Count what the gateway sent and how the service recorded the copies."""
    applied_per_event: Counter[str] = Counter()
    duplicate_receipts = 0
    for events in data.timelines.values():
        for event in events:
            event_id = event.get("gateway_event_id")
            if not event_id:
                continue
            if event["outcome"] in ("applied", "late_success"):
                applied_per_event[event_id] += 1
            elif event["outcome"] == "duplicate":
                duplicate_receipts += 1
    deliveries = data.webhooks["deliveries"]
    return {
        "events": data.webhooks["totals"]["events"],
        "attempts": len(deliveries),
        "delivered_ok": data.webhooks["totals"]["delivered_ok"],
        "lost": len(data.webhooks["losses"]),
        "duplicate_copies_sent": sum(1 for d in deliveries if d["copy"] == "duplicate"),
        "reordered_sent": sum(1 for d in deliveries if d["reordered"]),
        "duplicates_recorded": duplicate_receipts,
        "applied_twice": sum(1 for n in applied_per_event.values() if n > 1),
    }
