"""What a demo run is: the population, the faults and the service's (short) schedules."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.domain.delivery import DeliveryPolicy
from reconciler.domain.policy import PollPolicy


@dataclass(frozen=True)
class Profile:
    """Describe a run: population, faults and the service's (short) schedules."""

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
    # The merchant's endpoint (a receiver in the demo's process) and its faults: a share of
    # answers 503, a share answered after the delivery timeout, and an outage window
    # (relative to the start of traffic) during which every answer is a 503.
    notifications: bool = True
    endpoint_p_503: float = 0.10
    endpoint_p_slow: float = 0.05
    endpoint_outage_at_s: float = 5.0
    endpoint_outage_s: float = 4.0  # 0: no outage
    # Deliveries retry early on purpose too, so the run converges within seconds; production
    # (`Settings().notify`) starts at 5 s, grows to 10 h and waits 15 s for an answer.
    notify_base_delay_s: float = 0.5
    notify_factor: float = 2.0
    notify_max_delay_s: float = 4.0
    notify_give_up_after_s: float = 3600.0
    notify_timeout_s: float = 2.0
    notify_max_in_flight_per_endpoint: int = 4  # production's default, stated in the report
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

    @property
    def delivery_policy(self) -> DeliveryPolicy:
        """Return the delivery schedule the service runs with."""
        return DeliveryPolicy(
            base_delay=self.notify_base_delay_s,
            factor=self.notify_factor,
            max_delay=self.notify_max_delay_s,
            give_up_after=self.notify_give_up_after_s,
        )

    @property
    def slow_answer_s(self) -> float:
        """Return how long a slow answer takes: a second past the delivery timeout."""
        return self.notify_timeout_s + 1.0
