"""The demo's plot: how stale payments were (log scale, for the tail) and calls over time.

matplotlib is the optional extra `plot`; without it `draw` raises `PlotUnavailable`, and
the demo says how to install it instead of failing the run.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from reconciler.demo.profile import Profile
from reconciler.demo.report import describe_faults, describe_policy
from reconciler.demo.scoring import Collected, parse_time

INSTALL_HINT = "pip install 'reconciler[plot]'"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def caption(profile: Profile) -> str:
    """Say under the plot which faults and which poll policy produced it."""
    seed = f", seed {profile.seed}" if profile.seed is not None else ""
    return (
        f"{profile.payments} payments{seed}; faults: {describe_faults(profile)}; "
        f"poll policy: {describe_policy(profile.policy)}"
    )


def still_stale(samples: Sequence[float]) -> tuple[list[float], list[float]]:
    """Return the steps of the share of payments still stale after t (1 down to 1/n)."""
    ordered = sorted(samples)
    n = len(ordered)
    return ordered, [(n - i) / n for i in range(n)]


def draw(
    path: str, report: dict[str, Any], data: Collected, profile: Profile, t0: datetime | None
) -> None:
    """Draw staleness (log scale) and the gateway calls over time into a PNG (Agg)."""
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable(f"the plot needs matplotlib: {INSTALL_HINT}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    samples = report["staleness_samples"]
    named = (
        ("all payments", samples["webhook_arrived"] + samples["webhook_lost"]),
        ("terminal webhook arrived", samples["webhook_arrived"]),
        ("terminal webhook lost", samples["webhook_lost"]),
    )
    for label, values in named:
        if values:
            xs, ys = still_stale(values)
            left.step(xs, ys, where="post", label=f"{label} (n={len(values)})")
    # The tail is a few payments in a hundred: on a log axis it is visible, not a flat line.
    left.set_yscale("log")
    left.set_xlabel("staleness: gateway settled -> we settled (s)")
    left.set_ylabel("share of payments still stale after that")
    # No claim about which curve makes the tail: a delayed webhook can be later than the
    # poll that stands in for a lost one, and the run decides which, not the title.
    left.set_title("Staleness, by whether the terminal webhook arrived (log scale)")
    left.grid(True, which="both", alpha=0.3)
    left.legend()

    calls = [c for calls in data.calls["payments"].values() for c in calls]
    starts = [parse_time(c["started_at"]) for c in calls]
    base = t0 or min((s for s in starts if s is not None), default=None)
    if base is not None:
        by_kind: dict[str, list[float]] = {"create": [], "fetch": []}
        for call, start in zip(calls, starts, strict=True):
            if start is not None and call["kind"] in by_kind:
                by_kind[call["kind"]].append((start - base).total_seconds())
        settled = [
            (t - base).total_seconds()
            for t in (parse_time(v["final_at"]) for v in data.truth.values())
            if t is not None
        ]
        right.hist(
            [by_kind["create"], by_kind["fetch"]], bins=60, stacked=True, label=["creates", "polls"]
        )
        right.hist(settled, bins=60, histtype="step", color="black", label="gateway settlements")
        outage = report["outage"]
        start = parse_time(outage["start"]) if outage else None
        if outage and start is not None:
            x0 = (start - base).total_seconds()
            right.axvspan(x0, x0 + outage["duration_s"], color="red", alpha=0.15, label="outage")
    right.set_xlabel("time since start (s)")
    right.set_ylabel("calls (bars), settlements (line) per bin")
    right.set_title("Gateway calls over time")
    right.legend()
    fig.text(0.5, 0.01, "\n".join(textwrap.wrap(caption(profile), 150)), ha="center", va="bottom")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
