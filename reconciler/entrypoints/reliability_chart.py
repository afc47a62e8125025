"""The operator's page panel per gateway account: webhook delays over 24 h, drawn as SVG."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reconciler.domain.reliability import DelaySource
from reconciler.services.reliability_report import Panel

WIDTH, HEIGHT = 300, 90
WHY = {
    DelaySource.FIXED: "fixed: RECONCILER_POLL_FIRST_DELAY_S is a number",
    DelaySource.FALLBACK: "auto, fewer than 50 terminal webhooks in 24 h: the 30 s fallback",
    DelaySource.MISSED_MAJORITY: "auto, most terminal statuses found by polls: the minimum",
    DelaySource.OBSERVED: "auto: the observed quantile of terminal webhook delays",
}


@dataclass(frozen=True)
class PanelView:
    """A panel with its chart laid out: polylines of p50 and p95, scaled to the peak."""

    panel: Panel
    why: str
    p50: list[str]  # one SVG `points` attribute per unbroken run of hours
    p95: list[str]
    peak_s: float
    first: datetime | None
    last: datetime | None
    width: int = WIDTH
    height: int = HEIGHT


def lines(values: list[float | None], peak: float) -> list[str]:
    """Lay values out left to right; an hour without samples breaks the line."""
    step = WIDTH / max(len(values) - 1, 1)
    runs: list[list[str]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        y = HEIGHT - 2 - (HEIGHT - 4) * min(value / peak, 1.0)
        runs[-1].append(f"{i * step:.1f},{y:.1f}")
    # A single point draws nothing as a line: repeat it a pixel on.
    return [" ".join(run if len(run) > 1 else [*run, _nudge(run[0])]) for run in runs if run]


def _nudge(point: str) -> str:
    x, y = point.split(",")
    return f"{float(x) + 1:.1f},{y}"


def view(panel: Panel) -> PanelView:
    """Lay out one account's panel."""
    p50 = [p for _, p, _ in panel.series]
    p95 = [p for _, _, p in panel.series]
    peak = max([v for v in p95 + p50 if v is not None] + [1.0])
    return PanelView(
        panel=panel,
        why=WHY[panel.first_delay.source],
        p50=lines(p50, peak),
        p95=lines(p95, peak),
        peak_s=peak,
        first=panel.series[0][0] if panel.series else None,
        last=panel.series[-1][0] if panel.series else None,
    )
