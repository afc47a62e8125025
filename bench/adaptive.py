"""The adaptive grace period against fixed ones, two gateways in one run (virtual time).

Two simulated gateways share one run:

- A, fast and reliable: webhook delays log-normal, p95 2 s (median 0.8 s), 2 % lost;
- B, slow and lossy: webhook delays log-normal, p95 40 s (median 12 s), 20 % lost.

Settlement is log-normal (median 20 s, sigma 1.5, clipped to 1 s .. 45 min), payments
arrive evenly, and every payment gets one terminal webhook (unless lost). The first
delay is `auto` or fixed at 5, 30 or 120 s; the rest of the policy is production's.

The run is a model in virtual time, not the HTTP stack: a day of traffic would take a day.
But the decisions are the service's own code: each payment's schedule is
`domain.sync.decide_sync` (registration, then a poll's pending answer, until a poll finds
the status or the webhook comes), and `auto` is `domain.reliability.choose_first_delay`
over `domain.reliability` histograms of the terminal webhooks received so far (24 h
window), with missed counted as the service counts them (a poll found the terminal
status first), recomputed every 60 s as `ReliabilityJob` does. Non-terminal webhooks,
which push a poll back, are left out: both gateways would send them alike.

Calls are polls per payment; staleness is from settlement at the gateway to the service
knowing the terminal status (webhook or poll), in production seconds.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.domain.policy import PollPolicy
from reconciler.domain.reliability import (
    AutoBounds,
    DelaySource,
    FirstDelay,
    bucket_of,
    choose_first_delay,
)
from reconciler.domain.status import Outcome, Source, Status
from reconciler.domain.sync import Registered, Reported, SyncFields, decide_sync, initial_fields

SEED = 20261204
Z95 = 1.6449
SETTLE_MEDIAN_S, SETTLE_SIGMA = 20.0, 1.5
SETTLE_MIN_S, SETTLE_MAX_S = 1.0, 45 * 60.0
FIXED = (5.0, 30.0, 120.0)
REFRESH_S = 60.0
WINDOW = timedelta(hours=24)
START = datetime(2026, 12, 1, tzinfo=UTC)
PLOT = Path(__file__).resolve().parents[1] / "docs" / "img" / "adaptive.svg"


@dataclass(frozen=True)
class Gateway:
    name: str
    delay_p95_s: float
    delay_median_s: float
    loss: float

    @property
    def sigma(self) -> float:
        return math.log(self.delay_p95_s / self.delay_median_s) / Z95


GATEWAYS = (Gateway("A", 2.0, 0.8, 0.02), Gateway("B", 40.0, 12.0, 0.20))


@dataclass(frozen=True)
class Payment:
    created: datetime
    settled: datetime
    webhook_at: datetime | None  # None: the webhook is lost


@dataclass(frozen=True)
class Followed:
    polls: int
    known: datetime
    by_poll: bool


def population(gateway: Gateway, count: int, hours: float, seed: int) -> list[Payment]:
    """Draw a gateway's payments: arrivals evenly spread, settlement and webhook faults."""
    rng = random.Random(f"{seed}-{gateway.name}")
    step = hours * 3600.0 / count
    out = []
    for i in range(count):
        created = START + timedelta(seconds=i * step)
        settle = rng.lognormvariate(math.log(SETTLE_MEDIAN_S), SETTLE_SIGMA)
        settled = created + timedelta(seconds=min(max(settle, SETTLE_MIN_S), SETTLE_MAX_S))
        delay = rng.lognormvariate(math.log(gateway.delay_median_s), gateway.sigma)
        lost = rng.random() < gateway.loss
        out.append(Payment(created, settled, None if lost else settled + timedelta(seconds=delay)))
    return out


def follow(payment: Payment, policy: PollPolicy, rand: Callable[[], float]) -> Followed:
    """Run one payment through the service's schedule until its terminal status is known."""
    fields: SyncFields = initial_fields(policy, created_at=payment.created)
    decision = decide_sync(fields, Registered(), policy, payment.created, rand)
    polls = 0
    while True:
        at = decision.next_poll_at
        if payment.webhook_at is not None and (at is None or payment.webhook_at <= at):
            return Followed(polls, payment.webhook_at, by_poll=False)
        if at is None:  # gave up, and no webhook: never known (not reached in this model)
            return Followed(polls, fields.give_up_at, by_poll=True)
        polls += 1
        if at >= payment.settled:
            return Followed(polls, at, by_poll=True)
        fields = replace(
            fields,
            state=decision.state,
            attempts=decision.attempts,
            next_poll_at=decision.next_poll_at,
            last_polled_at=at,
            last_delay_s=decision.last_delay_s,
            give_up_at=decision.give_up_at,
        )
        pending = Reported(Source.POLL, Outcome.UNCHANGED, Status.PENDING, polled=True)
        decision = decide_sync(fields, pending, policy, at, rand)


class Learner:
    """`auto` for one account: what the service would have counted, recomputed each minute.

    Records wait in a heap until their time comes, then count in a sliding 24 h window,
    as the service's per-minute rows do.
    """

    def __init__(self, bounds: AutoBounds) -> None:
        self.bounds = bounds
        self.pending: list[tuple[datetime, str, int]] = []  # (when, kind, bucket)
        self.window: deque[tuple[datetime, str, int]] = deque()
        self.histogram: dict[int, int] = {}
        self.counts = {"polled_first": 0, "by_webhook": 0, "late": 0}
        self.refreshed: datetime | None = None
        self.current = FirstDelay(bounds.fallback_s, DelaySource.FALLBACK)
        self.history: list[tuple[datetime, FirstDelay]] = []

    def first_delay(self, now: datetime) -> FirstDelay:
        if self.refreshed is None or (now - self.refreshed).total_seconds() >= REFRESH_S:
            self.refreshed = now
            self.current = self._choose(now)
            self.history.append((now, self.current))
        return self.current

    def _count(self, record: tuple[datetime, str, int], step: int) -> None:
        _, kind, bucket = record
        if kind == "delay":
            self.histogram[bucket] = self.histogram.get(bucket, 0) + step
        else:
            self.counts[kind] += step

    def _choose(self, now: datetime) -> FirstDelay:
        while self.pending and self.pending[0][0] <= now:
            record = heapq.heappop(self.pending)
            self.window.append(record)
            self._count(record, +1)
        while self.window and self.window[0][0] < now - WINDOW:
            self._count(self.window.popleft(), -1)
        return choose_first_delay(self.histogram, **self.counts, bounds=self.bounds)

    def observe(self, payment: Payment, followed: Followed) -> None:
        if payment.webhook_at is not None:
            delay = (payment.webhook_at - payment.settled).total_seconds()
            heapq.heappush(self.pending, (payment.webhook_at, "delay", bucket_of(delay)))
        kind = "polled_first" if followed.by_poll else "by_webhook"
        heapq.heappush(self.pending, (followed.known, kind, 0))
        if followed.by_poll and payment.webhook_at is not None:
            heapq.heappush(self.pending, (payment.webhook_at, "late", 0))


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def simulate(gateway: Gateway, payments: list[Payment], first: str | float) -> dict[str, Any]:
    """Follow every payment of one gateway with a fixed first delay or `auto`."""
    rand = random.Random(f"{SEED}-jitter-{gateway.name}-{first}").random
    learner = Learner(AutoBounds()) if first == "auto" else None
    stale: list[float] = []
    polls = polled_first = late = 0
    for payment in payments:
        if learner is not None:
            seconds = learner.first_delay(payment.created).seconds
        else:
            assert isinstance(first, float)
            seconds = first
        followed = follow(payment, replace(PollPolicy(), first_delay=seconds), rand)
        polls += followed.polls
        polled_first += followed.by_poll
        late += followed.by_poll and payment.webhook_at is not None
        stale.append(max(0.0, (followed.known - payment.settled).total_seconds()))
        if learner is not None:
            learner.observe(payment, followed)
    out: dict[str, Any] = {
        "payments": len(payments),
        "calls_per_payment": round(polls / len(payments), 3),
        "staleness_p50_s": round(quantile(stale, 0.5), 1),
        "staleness_p99_s": round(quantile(stale, 0.99), 1),
        "missed_rate": round((polled_first - late) / len(payments), 3),
        "polled_first_rate": round(polled_first / len(payments), 3),
        "true_loss": round(sum(p.webhook_at is None for p in payments) / len(payments), 3),
        "stale": stale,
        "polls": polls,
    }
    if learner is not None:
        settled = learner.history[-1][1]
        out["first_delay_s"] = round(settled.seconds, 2)
        out["first_delay_source"] = settled.source.value
        out["true_delay_p95_s"] = gateway.delay_p95_s
    return out


def combine(results: list[dict[str, Any]]) -> dict[str, Any]:
    stale = [s for r in results for s in r["stale"]]
    payments = sum(r["payments"] for r in results)
    return {
        "payments": payments,
        "calls_per_payment": round(sum(r["polls"] for r in results) / payments, 3),
        "staleness_p50_s": round(quantile(stale, 0.5), 1),
        "staleness_p99_s": round(quantile(stale, 0.99), 1),
    }


def dominated(result: dict[str, Any], other: dict[str, Any]) -> bool:
    """Say whether `other` is at least as good on calls and both staleness figures, and
    strictly better on one."""
    keys = ("calls_per_payment", "staleness_p50_s", "staleness_p99_s")
    no_worse = all(other[k] <= result[k] for k in keys)
    return no_worse and any(other[k] < result[k] for k in keys)


def run(quick: bool) -> dict[str, Any]:
    count, hours = (3000, 4.0) if quick else (12000, 24.0)
    populations = {g.name: population(g, count, hours, SEED) for g in GATEWAYS}
    runs: dict[str, dict[str, Any]] = {}
    for first in ("auto", *FIXED):
        label = "auto" if first == "auto" else f"fixed {first:g} s"
        per = {g.name: simulate(g, populations[g.name], first) for g in GATEWAYS}
        per["both"] = combine([per[g.name] for g in GATEWAYS])
        runs[label] = per
    auto = runs["auto"]
    verdict = {
        name: [
            label
            for label, per in runs.items()
            if label != "auto" and dominated(auto[name], per[name])
        ]
        for name in ("A", "B", "both")
    }
    for per in runs.values():
        for result in per.values():
            result.pop("stale", None)
            result.pop("polls", None)
    result = {
        "payments_per_gateway": count,
        "hours": hours,
        "runs": runs,
        "fixed_settings_that_dominate_auto": verdict,
    }
    if not quick:
        plot(runs)
        result["plot"] = str(PLOT.relative_to(PLOT.parents[2]))
    return result


def render(result: dict[str, Any]) -> str:
    lines = [
        f"adaptive grace period: {result['payments_per_gateway']} payments per gateway over "
        f"{result['hours']:g} h (virtual time)",
        "| first delay | gateway | calls/payment | staleness p50 | staleness p99 | missed |",
        "|---|---|---|---|---|---|",
    ]
    for label, per in result["runs"].items():
        for name, r in per.items():
            missed = f"{r['missed_rate']:.1%}" if "missed_rate" in r else ""
            lines.append(
                f"| {label} | {name} | {r['calls_per_payment']:.2f} | {r['staleness_p50_s']:g} s "
                f"| {r['staleness_p99_s']:g} s | {missed} |"
            )
    for name in ("A", "B"):
        r = result["runs"]["auto"][name]
        lines.append(
            f"auto on {name}: first delay {r['first_delay_s']:g} s ({r['first_delay_source']}); "
            f"true webhook delay p95 {r['true_delay_p95_s']:g} s"
        )
    lines.append(
        f"fixed settings that dominate auto: {result['fixed_settings_that_dominate_auto']}"
    )
    return "\n".join(lines)


def plot(runs: dict[str, dict[str, Any]]) -> None:
    """Draw calls per payment against staleness p99, one point per setting and gateway (SVG)."""
    width, height, pad = 560, 320, 50
    points = [(label, name, r) for label, per in runs.items() for name, r in per.items()]
    max_calls = max(r["calls_per_payment"] for _, _, r in points) * 1.1
    max_p99 = max(r["staleness_p99_s"] for _, _, r in points) * 1.1

    def xy(r: dict[str, Any]) -> tuple[float, float]:
        x = pad + (width - 2 * pad) * r["calls_per_payment"] / max_calls
        y = height - pad - (height - 2 * pad) * r["staleness_p99_s"] / max_p99
        return x, y

    colours = {"A": "#1f6feb", "B": "#d1242f", "both": "#57606a"}
    bottom, right = height - pad, width - pad
    title = "first delay: auto (filled) vs fixed 5/30/120 s; A fast, B slow and lossy, grey both"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<line x1="{pad}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{bottom}" stroke="#333"/>',
        f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">'
        "gateway calls per payment</text>",
        f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" '
        'text-anchor="middle">staleness p99 (s)</text>',
        f'<text x="{pad}" y="{bottom + 14}" text-anchor="middle">0</text>',
        f'<text x="{right}" y="{bottom + 14}" text-anchor="middle">{max_calls:.2f}</text>',
        f'<text x="{pad - 4}" y="{pad + 4}" text-anchor="end">{max_p99:.0f}</text>',
        f'<text x="{width / 2}" y="20" text-anchor="middle">{title}</text>',
    ]
    placed: list[tuple[float, float]] = []
    for label, name, r in points:
        x, y = xy(r)
        fill = colours[name] if label == "auto" else "white"
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{fill}" stroke="{colours[name]}" '
            'stroke-width="2"/>'
        )
        lx, ly = x + 7, y - 6
        while any(abs(ly - py) < 12 and abs(lx - px) < 90 for px, py in placed):
            ly += 13  # a label that would overlap another goes below it
        placed.append((lx, ly))
        parts.append(f'<text x="{lx:.1f}" y="{ly:.1f}">{name}: {label}</text>')
    parts.append("</svg>")
    PLOT.write_text("\n".join(parts) + "\n")
