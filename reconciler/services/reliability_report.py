"""Read an account's webhook reliability back: the admin answer, the page's panel and chart."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from reconciler.adapters.repository import reliability as repo
from reconciler.domain.reliability import FirstDelay, Histogram, merge, missed, quantile
from reconciler.services.context import Context
from reconciler.services.errors import NotFound, ValidationFailed
from reconciler.services.reliability import DAY, DELAY_SLOT_S, default_account, default_gateway

WINDOWS = {"24h": DAY, "7d": timedelta(days=7)}
QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
CHART_SLOT = timedelta(hours=1)  # the page's chart: one point per hour over 24 h


def known_account(ctx: Context, account_key: str) -> bool:
    """Say whether an account key names an account of this service.

    Today that is `default-{gateway}` of a configured gateway; gateway accounts add
    their `gwa_…` ids here.
    """
    gateway = default_gateway(account_key)
    return gateway is not None and gateway in ctx.gateways


def accounts(ctx: Context) -> list[str]:
    """List the account keys the operator's page shows."""
    return [default_account(gateway) for gateway in sorted(ctx.gateways)]


def quantiles(histogram: Histogram) -> dict[str, float | None]:
    """Return p50, p95 and p99 of a delay histogram, in seconds (None without samples)."""
    out: dict[str, float | None] = {}
    for name, q in QUANTILES:
        value = quantile(histogram, q)
        out[name] = None if value is None else round(value, 3)
    return out


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def account_report(ctx: Context, account_key: str, window: str = "24h") -> dict[str, Any]:
    """Answer an account's reliability over a window, as the contract shapes it."""
    if window not in WINDOWS:
        raise ValidationFailed(f"window must be one of: {', '.join(WINDOWS)}")
    if not known_account(ctx, account_key):
        raise NotFound(f"no gateway account {account_key}")
    now = ctx.clock()
    since = now - WINDOWS[window]
    with ctx.read() as session:
        tallies = repo.tallies_since(session, account_key, since)
        delays = repo.delays_since(session, account_key, since)
    event_types: dict[str, Any] = {}
    for event_type in sorted(set(tallies) | set(delays)):
        counts = tallies.get(event_type, dict.fromkeys(repo.TALLY_COLUMNS, 0))
        buckets = delays.get(event_type, {name: {} for name in repo.DELAY_COLUMNS})
        settled = counts["polled_first"] + counts["by_webhook"]
        lost = missed(polled_first=counts["polled_first"], late=counts["late"])
        event_types[event_type] = {
            "received": counts["received"],
            "duplicates": counts["duplicates"],
            "out_of_order": counts["out_of_order"],
            "bad_signatures": counts["bad_signatures"],
            "delay_s": quantiles(buckets["count"]),
            "missed": lost,
            "missed_rate": rate(lost, settled),
            "late": counts["late"],
            "late_delay_s": quantiles(buckets["late"]),
        }
    first = ctx.reliability.first_delay_for(account_key, now)
    return {
        "account": account_key,
        "window": window,
        "event_types": event_types,
        "first_delay_s": first_delay_json(first),
    }


def first_delay_json(first: FirstDelay) -> dict[str, Any]:
    return {"value": round(first.seconds, 3), "source": first.source.value}


@dataclass(frozen=True)
class Panel:
    """What the operator's page shows of one account over 24 h."""

    account: str
    delay_s: Mapping[str, float | None]
    received: int
    missed: int
    missed_rate: float | None
    late: int
    late_rate: float | None
    first_delay: FirstDelay
    series: list[tuple[datetime, float | None, float | None]]  # hour, p50, p95


def panels(ctx: Context) -> list[Panel]:
    """Gather every account's panel for the operator's page."""
    now = ctx.clock()
    since = now - DAY
    out = []
    with ctx.read() as session:
        for key in accounts(ctx):
            tallies = repo.tallies_since(session, key, since).values()
            delays = repo.delays_since(session, key, since).values()
            series = repo.delay_series(session, key, since)
            polled_first = sum(t["polled_first"] for t in tallies)
            by_webhook = sum(t["by_webhook"] for t in tallies)
            late = sum(t["late"] for t in tallies)
            lost = missed(polled_first=polled_first, late=late)
            out.append(
                Panel(
                    account=key,
                    delay_s=quantiles(merge(kinds["count"] for kinds in delays)),
                    received=sum(t["received"] for t in tallies),
                    missed=lost,
                    missed_rate=rate(lost, polled_first + by_webhook),
                    late=late,
                    late_rate=rate(late, polled_first + by_webhook),
                    first_delay=ctx.reliability.first_delay_for(key, now),
                    series=hourly(series, since),
                )
            )
    return out


def hourly(
    series: Mapping[datetime, Histogram], since: datetime
) -> list[tuple[datetime, float | None, float | None]]:
    """Fold 5-minute delay buckets into hours: (hour, p50, p95), oldest first."""
    per_slot = int(CHART_SLOT.total_seconds()) // DELAY_SLOT_S
    start = since - timedelta(seconds=since.timestamp() % CHART_SLOT.total_seconds())
    hours: dict[datetime, list[Histogram]] = {}
    for slot, histogram in series.items():
        index = int((slot - start).total_seconds()) // (DELAY_SLOT_S * per_slot)
        hours.setdefault(start + index * CHART_SLOT, []).append(histogram)
    points = []
    for offset in range(25):
        hour = start + offset * CHART_SLOT
        merged = merge(hours.get(hour, []))
        points.append((hour, quantile(merged, 0.5), quantile(merged, 0.95)))
    return points
