"""The simulator's webhook delays: uniform up to a maximum, or log-normal around a median."""

from __future__ import annotations

import math
import random

import pytest

from reconciler.simulator.config import SimConfig


def draws(cfg: SimConfig, n: int = 20_000) -> list[float]:
    rng = random.Random(5)
    return sorted(cfg.webhook_delay(rng) for _ in range(n))


def test_log_normal_delays_have_the_median_and_p95_asked_for() -> None:
    sigma = math.log(40.0 / 12.0) / 1.6449  # p95 40 s around a 12 s median
    delays = draws(SimConfig(webhook_delay_median_s=12.0, webhook_delay_sigma=sigma))
    assert delays[len(delays) // 2] == pytest.approx(12.0, rel=0.05)
    assert delays[int(0.95 * len(delays))] == pytest.approx(40.0, rel=0.05)


def test_log_normal_delays_are_clipped_to_the_maximum_when_one_is_set() -> None:
    delays = draws(SimConfig(webhook_delay_median_s=12.0, webhook_delay_max_s=20.0))
    assert max(delays) == 20.0


def test_without_a_median_delays_stay_uniform() -> None:
    delays = draws(SimConfig(webhook_delay_max_s=4.0))
    assert min(delays) >= 0.0 and max(delays) <= 4.0
    assert delays[len(delays) // 2] == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("bad", [{"webhook_delay_median_s": 0.0}, {"webhook_delay_sigma": -1.0}])
def test_impossible_delay_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SimConfig(**bad)  # type: ignore[arg-type]
