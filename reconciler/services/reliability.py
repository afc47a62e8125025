"""Measure each gateway account's webhooks, and let the measurement set the grace period.

Recording is a few dictionary increments under a lock, in memory: `note_*` are called by
the webhook and poll paths after their decision. `flush` (every second, from the
`ReliabilityJob` of each serving process) adds what was counted to the tables with one
upsert per table, so a table row is per (account, event type, minute) — and per delay
bucket in 5-minute slots — never per event. Counts of the last second of a process that
crashes are lost; they are statistics, and nothing else depends on them.

`refresh` (every minute) reads 24 h of counts back for each account whose first delay is
`auto` and keeps the answer in memory: `first_delay_for(key, now)` and the poll policies
the context hands out read that table, never the database.

Accounts are keyed by a string: `default-{gateway}` for the account the environment's
credentials form; a `gwa_…` account id is one more key.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from reconciler.adapters.gateways.base import WebhookEvent
from reconciler.adapters.gateways.event_types import terminal_event_type
from reconciler.adapters.repository import reliability as repo
from reconciler.config import Settings
from reconciler.domain.payment import Change, Entry, Snapshot
from reconciler.domain.policy import PollPolicy
from reconciler.domain.reliability import (
    AutoBounds,
    DelaySource,
    FirstDelay,
    WebhookVerdict,
    bucket_of,
    choose_first_delay,
    judge_webhook,
    merge,
    missed_by_poll,
    slot_start,
)
from reconciler.domain.status import Outcome, Source, Status

if TYPE_CHECKING:
    from reconciler.services.context import Context

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "default-"
UNVERIFIED = "unverified"  # the event type of a delivery whose signature failed
MINUTE_S = 60
DELAY_SLOT_S = 300
DAY = timedelta(hours=24)
KEEP = timedelta(days=8)  # the 7-day window, and a day to spare
STALE_AFTER = timedelta(minutes=15)  # an `auto` delay not refreshed for this long is dropped
PRUNE_EVERY = timedelta(hours=1)
# /metrics' delay histogram, per gateway (the table's buckets are finer).
METRIC_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

TALLY_INDEX = {name: i for i, name in enumerate(repo.TALLY_COLUMNS)}
RECEIVED, DUPLICATES, OUT_OF_ORDER, BAD_SIGNATURES, BY_WEBHOOK, POLLED_FIRST, LATE = range(7)


def default_account(gateway: str) -> str:
    """Name the account the environment's credentials form for a gateway."""
    return f"{DEFAULT_PREFIX}{gateway}"


def default_gateway(account_key: str) -> str | None:
    """Return the gateway of a `default-{gateway}` key (None for any other key)."""
    if account_key.startswith(DEFAULT_PREFIX):
        return account_key[len(DEFAULT_PREFIX) :]
    return None


def auto_bounds(settings: Settings) -> AutoBounds:
    """Read `auto`'s quantile and bounds from the settings."""
    return AutoBounds(
        quantile=settings.poll_first_delay_quantile,
        min_s=settings.poll_first_delay_min_s,
        max_s=settings.poll_first_delay_max_s,
        fallback_s=PollPolicy().first_delay,
    )


@dataclass
class GatewayTotals:
    """Counts since the process started, for /metrics (per gateway, not per account)."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(METRIC_BUCKETS) + 1))
    delay_sum: float = 0.0
    polled_first: int = 0
    by_webhook: int = 0
    late: int = 0


class Reliability:
    """The counts not yet flushed, the first delays in force, the process's totals."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._tallies: dict[repo.TallyKey, list[int]] = {}
        self._delays: dict[repo.DelayKey, list[int]] = {}
        self.totals: dict[str, GatewayTotals] = {}
        self._first: dict[str, tuple[FirstDelay, datetime]] = {}
        self._policies: dict[str, PollPolicy] = {}
        self.pruned_at: datetime | None = None

    # --- recording ---------------------------------------------------------------------

    def count(self, key: str, gateway: str, event_type: str, now: datetime, *indexes: int) -> None:
        """Add one to per-minute counts (terminal and late ones also to the gateway's totals)."""
        row = (key, event_type[:100], slot_start(now, MINUTE_S))
        with self._lock:
            counts = self._tallies.get(row)
            if counts is None:
                counts = self._tallies[row] = [0] * len(TALLY_INDEX)
            for index in indexes:
                counts[index] += 1
                if index == POLLED_FIRST:
                    self._totals(gateway).polled_first += 1
                elif index == BY_WEBHOOK:
                    self._totals(gateway).by_webhook += 1
                elif index == LATE:
                    self._totals(gateway).late += 1

    def delay(
        self, key: str, gateway: str, event_type: str, now: datetime, seconds: float, kind: int
    ) -> None:
        """Count a delay; `kind` 0: plain, 1: of a terminal webhook, 2: of a late one."""
        row = (key, event_type[:100], slot_start(now, DELAY_SLOT_S), bucket_of(seconds))
        metric = bisect.bisect_left(METRIC_BUCKETS, seconds)
        with self._lock:
            counts = self._delays.get(row)
            if counts is None:
                counts = self._delays[row] = [0, 0, 0]
            counts[0] += 1
            if kind:
                counts[1] += 1
            if kind == 2:
                counts[2] += 1
            totals = self._totals(gateway)
            totals.buckets[metric] += 1
            totals.delay_sum += max(seconds, 0.0)

    def _totals(self, gateway: str) -> GatewayTotals:
        totals = self.totals.get(gateway)
        if totals is None:
            totals = self.totals[gateway] = GatewayTotals()
        return totals

    def snapshot(self) -> dict[str, GatewayTotals]:
        """Copy the totals per gateway (for /metrics)."""
        with self._lock:
            return {
                gateway: GatewayTotals(
                    list(t.buckets), t.delay_sum, t.polled_first, t.by_webhook, t.late
                )
                for gateway, t in self.totals.items()
            }

    def take(self) -> tuple[dict[repo.TallyKey, list[int]], dict[repo.DelayKey, list[int]]]:
        """Hand over what was counted since the last flush."""
        with self._lock:
            tallies, self._tallies = self._tallies, {}
            delays, self._delays = self._delays, {}
        return tallies, delays

    def give_back(
        self, tallies: dict[repo.TallyKey, list[int]], delays: dict[repo.DelayKey, list[int]]
    ) -> None:
        """Keep counts a failed flush could not store, for the next one."""
        with self._lock:
            for source, target in ((tallies, self._tallies), (delays, self._delays)):
                for row, counts in source.items():
                    kept = target.setdefault(row, [0] * len(counts))  # type: ignore[arg-type]
                    for i, n in enumerate(counts):
                        kept[i] += n

    # --- the first delay -----------------------------------------------------------------

    def is_auto(self, gateway: str) -> bool:
        return gateway in self.settings.first_delay_auto

    def first_delay_for(self, account_key: str, now: datetime) -> FirstDelay:
        """Return the first poll delay in force for an account, and why."""
        gateway = default_gateway(account_key) or ""
        if not self.is_auto(gateway):
            return FirstDelay(self.settings.policy(gateway).first_delay, DelaySource.FIXED)
        known = self._first.get(account_key)
        if known is None or now - known[1] > STALE_AFTER:
            return FirstDelay(auto_bounds(self.settings).fallback_s, DelaySource.FALLBACK)
        return known[0]

    def set_first_delay(self, account_key: str, first: FirstDelay, now: datetime) -> None:
        """Put a freshly computed first delay in force."""
        with self._lock:
            self._first[account_key] = (first, now)

    def policy(self, gateway: str, now: datetime) -> PollPolicy:
        """Return a gateway's poll policy with the first delay in force (`auto` included)."""
        base = self.settings.policy(gateway)
        if not self.is_auto(gateway):
            return base
        seconds = self.first_delay_for(default_account(gateway), now).seconds
        policy = self._policies.get(gateway)
        if policy is None or policy.first_delay != seconds:
            policy = self._policies[gateway] = replace(base, first_delay=seconds)
        return policy


# --- the hooks: one call each from the webhook and poll paths ------------------------------


def note_webhook(
    ctx: Context,
    gateway: str,
    event: WebhookEvent,
    now: datetime,
    payment: Snapshot | None = None,
    change: Change | None = None,
) -> None:
    """Count a first delivery: received, out of order, its delay, first-terminal or late."""
    rel, key = ctx.reliability, default_account(gateway)
    report = event.report
    if report is None:
        rel.count(key, gateway, event.event_type, now, RECEIVED)
        return
    verdict = WebhookVerdict()
    if payment is not None and change is not None and change.decision is not None:
        verdict = judge_webhook(
            before_status=payment.status,
            before_source=payment.status_source,
            reported=report.status,
            outcome=change.decision.outcome,
        )
    happened = (
        (OUT_OF_ORDER, verdict.out_of_order),
        (BY_WEBHOOK, verdict.first_terminal),
        (LATE, verdict.late),
    )
    rel.count(key, gateway, event.event_type, now, RECEIVED, *(i for i, yes in happened if yes))
    if report.occurred_at is not None:
        seconds = (now - report.occurred_at).total_seconds()
        kind = 2 if verdict.late else 1 if report.status.terminal else 0
        rel.delay(key, gateway, event.event_type, now, seconds, kind)


def note_duplicate(ctx: Context, gateway: str, event: WebhookEvent, now: datetime) -> None:
    """Count a delivery of an event already stored."""
    ctx.reliability.count(default_account(gateway), gateway, event.event_type, now, DUPLICATES)


def note_bad_signature(ctx: Context, gateway: str, now: datetime) -> None:
    """Count a delivery whose signature failed (its event type cannot be trusted)."""
    ctx.reliability.count(default_account(gateway), gateway, UNVERIFIED, now, BAD_SIGNATURES)


def note_polls(ctx: Context, changes: Iterable[Change]) -> None:
    """Count the terminal statuses stored polls found before any webhook."""
    rel = ctx.reliability
    for change in changes:
        before, after, entry = change.before, change.after, change.entry
        if entry is None or not missed_by_poll(
            before_status=before.status, after_status=after.status, source=entry.source
        ):
            continue
        event_type = terminal_event_type(after.gateway, Status(after.status))
        key = default_account(after.gateway)
        rel.count(key, after.gateway, event_type, entry.recorded_at, POLLED_FIRST)


# --- storing and reading back --------------------------------------------------------------


def flush(ctx: Context) -> int:
    """Add the counts gathered since the last flush to the tables; return the rows written."""
    rel = ctx.reliability
    tallies, delays = rel.take()
    now = ctx.clock()
    prune = rel.pruned_at is None or now - rel.pruned_at > PRUNE_EVERY
    if not tallies and not delays and not prune:
        return 0
    try:
        with ctx.sessions.begin() as session:
            repo.add_tallies(
                session, {k: dict(zip(TALLY_INDEX, v, strict=True)) for k, v in tallies.items()}
            )
            repo.add_delays(
                session,
                {k: dict(zip(repo.DELAY_COLUMNS, v, strict=True)) for k, v in delays.items()},
            )
            if prune:
                repo.prune_reliability(session, now - KEEP)
    except Exception:
        rel.give_back(tallies, delays)
        raise
    if prune:
        rel.pruned_at = now
    return len(tallies) + len(delays)


def refresh(ctx: Context) -> dict[str, FirstDelay]:
    """Recompute the first delay of every account whose first delay is `auto`."""
    rel, now = ctx.reliability, ctx.clock()
    bounds = auto_bounds(ctx.settings)
    chosen: dict[str, FirstDelay] = {}
    with ctx.read() as session:
        for gateway in sorted(ctx.settings.first_delay_auto & set(ctx.gateways)):
            key = default_account(gateway)
            chosen[key] = choose_for(session, key, now, bounds)
    for key, first in chosen.items():
        rel.set_first_delay(key, first, now)
    return chosen


def choose_for(session: Session, key: str, now: datetime, bounds: AutoBounds) -> FirstDelay:
    """Choose one account's first delay from its last 24 h of counts."""
    since = now - DAY
    tallies = repo.tallies_since(session, key, since).values()
    delays = repo.delays_since(session, key, since).values()
    return choose_first_delay(
        merge(kinds["terminal"] for kinds in delays),
        polled_first=sum(t["polled_first"] for t in tallies),
        by_webhook=sum(t["by_webhook"] for t in tallies),
        late=sum(t["late"] for t in tallies),
        bounds=bounds,
    )


def registration_entry(first: FirstDelay, now: datetime) -> Entry:
    """Say on a new payment's timeline which first delay it got and why."""
    pending = Status.PENDING.value
    return Entry(
        source=Source.API,
        outcome=Outcome.REGISTERED,
        from_status=pending,
        to_status=pending,
        recorded_at=now,
        detail={"first_delay_s": round(first.seconds, 3), "first_delay_source": first.source},
    )
