"""The parts of the settings that are values of their own: a gateway's address and
credentials, the notification limits, and how a poll policy is read from its variables."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.config_checks import ConfigError
from reconciler.domain.delivery import DeliveryPolicy
from reconciler.domain.policy import PollPolicy

PREFIX = "RECONCILER_"

# PollPolicy attribute -> variable suffix; `RECONCILER_POLL_*` for all gateways,
# `RECONCILER_<GATEWAY>_POLL_*` for one.
POLICY_VARIABLES = {
    "first_delay": "POLL_FIRST_DELAY_S",
    "base_delay": "POLL_BASE_DELAY_S",
    "factor": "POLL_FACTOR",
    "max_delay": "POLL_MAX_DELAY_S",
    "give_up_after": "POLL_GIVE_UP_AFTER_S",
    "retry_first": "POLL_RETRY_FIRST_S",
    "abandon_after": "POLL_ABANDON_AFTER_S",
}


@dataclass(frozen=True)
class GatewayConfig:
    """One gateway's address and credentials; `enabled` is False when credentials are unset."""

    name: str
    api_base: str | None = None
    api_key: str | None = None  # stripe secret key, or razorpay key id
    api_secret: str | None = None  # razorpay key secret
    webhook_secrets: tuple[str, ...] = ()
    api_version: str | None = None  # stripe: the Stripe-Version header

    @property
    def enabled(self) -> bool:
        if self.name == "simulator":
            return bool(self.api_base)
        if self.name == "stripe":
            return bool(self.api_key)
        return bool(self.api_key and self.api_secret)


Secrets = tuple[str, ...]

# A delivery attempt ends by its timeout (the sender's deadline); its lease must outlast
# it by this much (reading what to send, the watchdog's latency, storing the result).
NOTIFY_LEASE_MARGIN_S = 5.0


@dataclass(frozen=True)
class NotifySettings:
    """How deliveries to merchants' endpoints are retried, timed out and allowed to go."""

    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    timeout_s: float = 15.0
    allow_private: bool = False
    concurrency: int = 16  # delivery attempts in flight per process, across endpoints
    max_in_flight_per_endpoint: int = 4  # so one slow endpoint cannot take every slot
    max_in_flight_per_merchant: int = 4  # so one merchant cannot take every slot
    max_endpoints: int = 16  # per merchant: one event fans out to each
    disable_after_s: float = 5 * 24 * 3600.0  # an endpoint failing this long is disabled


def number(env: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    # float() also accepts "nan" and "inf", from which no delay or schedule can be built.
    if not math.isfinite(value):
        raise ConfigError(f"{env} must be a number, got {raw!r}")
    return value


def policy_from(env: Mapping[str, str], prefix: str, fallback: PollPolicy) -> PollPolicy:
    values = {}
    for attr, suffix in POLICY_VARIABLES.items():
        name = f"{PREFIX}{prefix}{suffix}"
        raw = env.get(name)
        values[attr] = getattr(fallback, attr) if raw in (None, "") else number(name, raw)
    try:
        return PollPolicy(**values)
    except ValueError as exc:
        raise ConfigError(f"poll policy {PREFIX}{prefix}POLL_*: {exc}") from None


def policy_env(prefix: str, policy: PollPolicy) -> dict[str, str]:
    return {
        f"{PREFIX}{prefix}{suffix}": repr(float(getattr(policy, attr)))
        for attr, suffix in POLICY_VARIABLES.items()
    }
