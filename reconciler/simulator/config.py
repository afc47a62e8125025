"""The simulator's settings: the payment life it draws and the faults it injects."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TERMINAL = ("succeeded", "failed", "canceled")
DEFAULT_OUTCOMES: tuple[tuple[str, float], ...] = (
    ("succeeded", 0.8),
    ("failed", 0.15),
    ("canceled", 0.05),
)


@dataclass(frozen=True)
class SimConfig:
    """Everything the simulator can be told at start; the runtime part is in `RUNTIME_FIELDS`."""

    seed: int | None = None
    api_key: str | None = None
    # The payment's life, in simulator seconds after creation.
    settle_min_s: float = 1.0
    settle_max_s: float = 5.0
    # When set, the settle time is log-normal with this median (and `settle_sigma`, the
    # sigma of its logarithm), clipped to settle_min_s..settle_max_s; else it is uniform.
    settle_median_s: float | None = None
    settle_sigma: float = 1.0
    outcomes: tuple[tuple[str, float], ...] = DEFAULT_OUTCOMES
    p_requires_action: float = 0.1
    # Gateway API faults.
    latency_min_s: float = 0.0
    latency_max_s: float = 0.0
    p_5xx: float = 0.0
    p_429: float = 0.0
    retry_after_s: int = 1
    p_hang: float = 0.0
    hang_s: float = 30.0
    outages: tuple[tuple[float, float], ...] = ()  # (start s after simulator start, duration s)
    # Webhooks.
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhooks_enabled: bool = True
    p_webhook_loss: float = 0.0
    p_webhook_duplicate: float = 0.0
    p_webhook_reorder: float = 0.0
    webhook_delay_max_s: float = 0.0
    # When set, a webhook's delay is log-normal with this median (and `webhook_delay_sigma`,
    # the sigma of its logarithm), clipped to webhook_delay_max_s when that is set; else it
    # is uniform in 0..webhook_delay_max_s.
    webhook_delay_median_s: float | None = None
    webhook_delay_sigma: float = 1.0
    webhook_max_attempts: int = 5
    webhook_retry_base_s: float = 1.0
    webhook_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for name in (
            "p_requires_action",
            "p_5xx",
            "p_429",
            "p_hang",
            "p_webhook_loss",
            "p_webhook_duplicate",
            "p_webhook_reorder",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.p_5xx + self.p_429 + self.p_hang > 1.0:
            raise ValueError("p_5xx + p_429 + p_hang must not exceed 1")
        for low, high in (
            ("settle_min_s", "settle_max_s"),
            ("latency_min_s", "latency_max_s"),
        ):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo < 0 or hi < lo or not math.isfinite(hi):
                raise ValueError(f"need 0 <= {low} <= {high}, got {lo}..{hi}")
        if self.settle_median_s is not None and not self.settle_median_s > 0:
            raise ValueError(f"settle_median_s must be positive, got {self.settle_median_s}")
        if self.settle_sigma < 0 or self.webhook_delay_sigma < 0:
            raise ValueError("settle_sigma and webhook_delay_sigma must not be negative")
        if self.webhook_delay_median_s is not None and not self.webhook_delay_median_s > 0:
            raise ValueError(
                f"webhook_delay_median_s must be positive, got {self.webhook_delay_median_s}"
            )
        if min(self.hang_s, self.webhook_delay_max_s, self.retry_after_s) < 0:
            raise ValueError("durations must not be negative")
        if self.webhook_max_attempts < 1:
            raise ValueError("webhook_max_attempts must be at least 1")
        if not self.outcomes or any(s not in TERMINAL or w < 0 for s, w in self.outcomes):
            raise ValueError(f"outcomes must weigh {', '.join(TERMINAL)} with weights >= 0")
        if sum(w for _, w in self.outcomes) <= 0:
            raise ValueError("outcome weights must not all be zero")
        for start, duration in self.outages:
            if start < 0 or duration <= 0:
                raise ValueError("an outage needs start >= 0 and duration > 0")

    def webhook_delay(self, rng: random.Random) -> float:
        """Draw one webhook's delay, in simulator seconds."""
        if self.webhook_delay_median_s is None:
            return rng.uniform(0.0, self.webhook_delay_max_s)
        delay = rng.lognormvariate(math.log(self.webhook_delay_median_s), self.webhook_delay_sigma)
        return min(delay, self.webhook_delay_max_s) if self.webhook_delay_max_s > 0 else delay

    @property
    def sends_webhooks(self) -> bool:
        return self.webhooks_enabled and bool(self.webhook_url) and bool(self.webhook_secret)

    def updated(self, changes: Mapping[str, Any]) -> SimConfig:
        """Return a copy with the given runtime fields replaced (JSON-shaped values accepted)."""
        unknown = set(changes) - RUNTIME_FIELDS
        if unknown:
            raise ValueError(f"unknown or fixed fields: {', '.join(sorted(unknown))}")
        values = dict(changes)
        if "outcomes" in values:
            values["outcomes"] = _outcomes_value(values["outcomes"])
        if "outages" in values:
            values["outages"] = tuple((float(s), float(d)) for s, d in values["outages"])
        try:
            return dataclasses.replace(self, **values)
        except TypeError as exc:
            raise ValueError(str(exc)) from None

    def faults_json(self) -> dict[str, Any]:
        """Show the runtime settings (what `POST /_sim/faults` can change)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in sorted(RUNTIME_FIELDS)}
        out["outcomes"] = dict(self.outcomes)
        out["outages"] = [list(o) for o in self.outages]
        return out


# Settings that may change while the simulator runs; seed, secret, key and URL stay fixed.
RUNTIME_FIELDS = frozenset(
    f.name
    for f in dataclasses.fields(SimConfig)
    if f.name not in ("seed", "api_key", "webhook_url", "webhook_secret")
)


def _outcomes_value(raw: Any) -> tuple[tuple[str, float], ...]:
    if isinstance(raw, str):
        return parse_outcomes(raw)
    if isinstance(raw, Mapping):
        return tuple((str(k), float(v)) for k, v in raw.items())
    return tuple((str(k), float(v)) for k, v in raw)


def parse_outcomes(text: str) -> tuple[tuple[str, float], ...]:
    """Read `succeeded=0.8,failed=0.15,canceled=0.05`."""
    pairs: list[tuple[str, float]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, weight = part.partition("=")
        if not sep:
            raise ValueError(f"expected status=weight, got {part!r}")
        pairs.append((name.strip(), float(weight)))
    return tuple(pairs)


def parse_outage(text: str) -> tuple[float, float]:
    """Read `START:DURATION` (seconds after simulator start, seconds)."""
    start, sep, duration = text.partition(":")
    if not sep:
        raise ValueError(f"expected START:DURATION, got {text!r}")
    return float(start), float(duration)
