"""What a demo run is: the population, the gateway's faults and the service's poll policy."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.domain.policy import PollPolicy


@dataclass(frozen=True)
class Profile:
    """Describe a run: population, faults and the service's (short) poll policy."""

    payments: int = 300
    seed: int | None = None
    settle_min_s: float = 1.0
    settle_max_s: float = 15.0
    webhook_loss: float = 0.20
    webhook_duplicate: float = 0.10
    webhook_reorder: float = 0.10
    p_5xx: float = 0.05
    latency_max_s: float = 0.0
    webhooks: bool = True
    outage_at_s: float = 10.0
    outage_s: float = 5.0  # 0: no outage
    # The demo polls early on purpose, so that a lost webhook is filled in on screen within
    # seconds; production's default (PollPolicy()) waits 30 s for the webhook first.
    first_delay_s: float = 2.0
    base_delay_s: float = 1.0
    factor: float = 2.0
    max_delay_s: float = 8.0
    give_up_after_s: float = 3600.0
    retry_first_s: float = 1.0  # a failed poll's first short retry (0: none)
    sweep_interval_s: float = 0.5
    breaker_cooldown_s: float = 2.0
    breaker_max_cooldown_s: float = 8.0
    gateway_timeout_s: float = 5.0
    create_concurrency: int = 8
    timeout_s: float = 120.0

    @property
    def policy(self) -> PollPolicy:
        """Return the poll policy the service runs with."""
        return PollPolicy(
            first_delay=self.first_delay_s,
            base_delay=self.base_delay_s,
            factor=self.factor,
            max_delay=self.max_delay_s,
            give_up_after=self.give_up_after_s,
            retry_first=self.retry_first_s,
        )
