"""Score a run against the simulator's ground truth, one report section per topic.

A payment whose terminal status differs from the gateway's is *wrong*, and so is a
merchant notification *lost*: an event the service recorded that did not reach the demo's
endpoint with a valid signature, or a settled payment with no event at all. `score` builds
the report from section scorers (payments, gateway calls, polls, staleness, outage,
webhooks, notifications), each reading `Collected` and returning its part; a new topic is
one more scorer here and one more renderer in `report.py`.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Sequence
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
    """Everything the scoring reads: our view, the gateway's truth, calls and webhooks.

    With a merchant endpoint, also its deliveries as the API lists them and the requests
    its receiver recorded (`receiver.Receiver.receipts`); None when the run had none.
    """

    ours: list[dict[str, Any]]
    truth: dict[str, Any]
    calls: dict[str, Any]
    webhooks: dict[str, Any]
    timelines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    deliveries: list[dict[str, Any]] | None = None
    receipts: list[dict[str, Any]] | None = None


def collect(
    stack: Stack,
    *,
    timelines: bool = True,
    endpoint_id: str | None = None,
    receipts: Callable[[], list[dict[str, Any]]] | None = None,
) -> Collected:
    """Read both sides' final state (and every payment's timeline, in parallel).

    With `endpoint_id`, the endpoint's deliveries are read too, and then the receiver's
    `receipts`: in that order, so a delivery the API calls delivered was received before.
    """
    ours = stack.payments()
    deliveries = stack.deliveries(endpoint_id) if endpoint_id else None
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
        deliveries=deliveries,
        receipts=receipts() if deliveries is not None and receipts else None,
    )


def score(data: Collected, outage: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score a run: convergence, wrong payments, calls, staleness, outage, notifications."""
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
        "notifications": notifications(data),
        "staleness_samples": tally.stale,
    }


def exit_code(report: dict[str, Any]) -> int:
    """Return 0 for a right run, 1 if a payment is wrong or a notification lost, 3 if unsettled.

    A delivery still pending when the demo stopped waiting counts like an unsettled
    payment (the run timed out), not as lost.
    """
    notified = report.get("notifications") or {}
    if report["wrong"] or notified.get("lost"):
        return WRONG
    if report["not_settled"] or report["not_created_at_gateway"] or notified.get("pending"):
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


def notifications(data: Collected) -> dict[str, Any] | None:
    """Score the merchant endpoint's deliveries against what its receiver verified.

    An event is *lost* when its delivery failed, or the API calls it delivered while the
    receiver holds no signature-valid request for it that it answered 200 in time; a
    payment whose status (or review flag) has no event of that type is lost too.
    Latency runs from the event's `created_at` (written in the status change's
    transaction) to the receiver's first in-time 200 for it, and to the first attempt
    that reached it (whatever the answer); attempts are the API's.
    None when the run had no endpoint.
    """
    if data.deliveries is None or data.receipts is None:
        return None
    deliveries = data.deliveries
    statuses = Counter(d["status"] for d in deliveries)
    answers: Counter[str] = Counter(r["answer"] for r in data.receipts)
    first_ok: dict[str, datetime] = {}
    first_seen: dict[str, float] = {}  # event id -> seconds from its change to any attempt
    latest: dict[str, tuple[int, str]] = {}  # payment id -> (sequence, status) seen in time
    latency: list[float] = []
    for receipt in sorted(data.receipts, key=lambda r: r["arrived_at"]):
        event_id, arrived = receipt["webhook_id"], parse_time(receipt["arrived_at"])
        created = parse_time(receipt["created_at"])
        if arrived is not None and created is not None and event_id not in first_seen:
            first_seen[event_id] = (arrived - created).total_seconds()
        if receipt["answer"] != "ok" or arrived is None or event_id in first_ok:
            continue
        first_ok[event_id] = arrived
        if created is not None:
            latency.append((arrived - created).total_seconds())
        payment, sequence = receipt["payment_id"], receipt["sequence"]
        if isinstance(sequence, int) and sequence > latest.get(payment, (0, ""))[0]:
            latest[payment] = (sequence, receipt["payment_status"])
    lost = sorted(
        d["event_id"]
        for d in deliveries
        if d["status"] == "failed" or (d["status"] == "delivered" and d["event_id"] not in first_ok)
    )
    announced = {(d["payment_id"], d["event_type"]) for d in deliveries}
    unannounced = [p["id"] for p in data.ours if not _expected_events(p) <= announced]
    settled = [p for p in data.ours if p["status"] in TERMINAL]
    attempts: list[int] = [d["attempts"] for d in deliveries]
    return {
        "events": len({d["event_id"] for d in deliveries}),
        "deliveries": len(deliveries),
        "delivered": statuses["delivered"],
        "failed": statuses["failed"],
        "pending": statuses["pending"],
        "attempts": sum(attempts),
        "attempts_per_delivery": summary(attempts),
        "requests": len(data.receipts),
        "answers": {a: answers[a] for a in ("ok", "503", "slow", "outage", "rejected")},
        "latency_s": summary(latency),
        "first_attempt_s": summary(list(first_seen.values())),
        "lost": len(lost) + len(unannounced),
        "lost_ids": (lost + unannounced)[:20],
        "merchant_view": {
            "settled": len(settled),
            "matches": sum(1 for p in settled if latest.get(p["id"], (0, ""))[1] == p["status"]),
        },
    }


def _expected_events(payment: dict[str, Any]) -> set[tuple[str, str]]:
    """Name the events a payment's current state must have been announced with."""
    expected = set()
    if payment["status"] in TERMINAL:
        expected.add((payment["id"], f"payment.{payment['status']}"))
    state = (payment.get("sync") or {}).get("state")
    if state in ("needs_review", "gave_up"):
        expected.add((payment["id"], f"payment.{state}"))
    return expected
