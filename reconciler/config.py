"""Settings: every `RECONCILER_*` environment variable, read once into one object."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.domain.delivery import DeliveryPolicy
from reconciler.domain.policy import PollPolicy

GATEWAYS = ("simulator", "stripe", "razorpay")

_POLICY_FIELDS = {
    "first_delay": "POLL_FIRST_DELAY_S",
    "base_delay": "POLL_BASE_DELAY_S",
    "factor": "POLL_FACTOR",
    "max_delay": "POLL_MAX_DELAY_S",
    "give_up_after": "POLL_GIVE_UP_AFTER_S",
}


class ConfigError(ValueError):
    """A configuration value that cannot be used."""


@dataclass(frozen=True)
class GatewayConfig:
    """One gateway's address and credentials; `enabled` is False when credentials are unset."""

    name: str
    api_base: str | None = None
    api_key: str | None = None  # stripe secret key, or razorpay key id
    api_secret: str | None = None  # razorpay key secret
    webhook_secrets: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        if self.name == "simulator":
            return bool(self.api_base)
        if self.name == "stripe":
            return bool(self.api_key)
        return bool(self.api_key and self.api_secret)


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///reconciler.db"
    admin_token: str | None = None
    sweep_interval_s: float = 1.0
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    sweep_enabled: bool = True
    sweep_batch_size: int = 200
    sweep_concurrency: int = 16
    lease_s: float = 60.0
    db_pool_size: int = 10
    connect_timeout_s: float = 3.05
    read_timeout_s: float = 10.0
    create_timeout_s: float = 5.0
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 30.0
    breaker_max_cooldown_s: float = 600.0
    max_body_bytes: int = 64 * 1024
    webhook_tolerance_s: float = 300.0
    ready_max_sweep_age_s: float = 60.0
    log_level: str = "INFO"
    gateways: Mapping[str, GatewayConfig] = field(default_factory=dict)
    policies: Mapping[str, PollPolicy] = field(default_factory=dict)
    notify: NotifySettings = field(default_factory=lambda: NotifySettings())

    def policy(self, gateway: str) -> PollPolicy:
        return self.policies.get(gateway) or PollPolicy()

    def gateway(self, name: str) -> GatewayConfig:
        return self.gateways.get(name) or GatewayConfig(name)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `RECONCILER_*` variables (the process environment by default)."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(f"RECONCILER_{name}")
            return value if value not in (None, "") else None

        def number(name: str, default: float) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            # float() also accepts "nan" and "inf", from which no delay or schedule can be built.
            if not math.isfinite(value):
                raise ConfigError(f"RECONCILER_{name} must be a number, got {raw!r}")
            return value

        def integer(name: str, default: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                return int(raw)
            except ValueError:
                raise ConfigError(f"RECONCILER_{name} must be an integer, got {raw!r}") from None

        def secrets(name: str) -> tuple[str, ...]:
            # Several comma-separated secrets are accepted while a key is being rotated.
            raw = get(name) or ""
            return tuple(s.strip() for s in raw.split(",") if s.strip())

        defaults = PollPolicy()
        base_policy = {
            attr: number(var, getattr(defaults, attr)) for attr, var in _POLICY_FIELDS.items()
        }
        policies: dict[str, PollPolicy] = {}
        for gw in GATEWAYS:
            values = {
                attr: number(f"{gw.upper()}_{var}", base_policy[attr])
                for attr, var in _POLICY_FIELDS.items()
            }
            try:
                policies[gw] = PollPolicy(**values)
            except ValueError as exc:
                raise ConfigError(f"poll policy for {gw}: {exc}") from None

        gateways = {
            "simulator": GatewayConfig(
                "simulator",
                api_base=get("SIMULATOR_URL"),
                api_key=get("SIMULATOR_API_KEY"),
                webhook_secrets=secrets("SIMULATOR_WEBHOOK_SECRET"),
            ),
            "stripe": GatewayConfig(
                "stripe",
                api_base=get("STRIPE_API_BASE") or "https://api.stripe.com",
                api_key=get("STRIPE_API_KEY"),
                webhook_secrets=secrets("STRIPE_WEBHOOK_SECRET"),
            ),
            "razorpay": GatewayConfig(
                "razorpay",
                api_base=get("RAZORPAY_API_BASE") or "https://api.razorpay.com",
                api_key=get("RAZORPAY_KEY_ID"),
                api_secret=get("RAZORPAY_KEY_SECRET"),
                webhook_secrets=secrets("RAZORPAY_WEBHOOK_SECRET"),
            ),
        }
        sweep_interval = number("SWEEP_INTERVAL_S", 1.0)
        if sweep_interval <= 0:
            raise ConfigError("RECONCILER_SWEEP_INTERVAL_S must be positive")
        settings = cls(
            database_url=get("DATABASE_URL") or "sqlite:///reconciler.db",
            admin_token=get("ADMIN_TOKEN"),
            sweep_interval_s=sweep_interval,
            host=get("HOST") or "127.0.0.1",
            port=integer("PORT", 8000),
            workers=integer("WORKERS", 1),
            sweep_enabled=(get("SWEEP_ENABLED") or "1").lower() not in ("0", "false", "no"),
            sweep_batch_size=integer("SWEEP_BATCH_SIZE", 200),
            sweep_concurrency=integer("SWEEP_CONCURRENCY", 16),
            lease_s=number("LEASE_S", 60.0),
            db_pool_size=integer("DB_POOL_SIZE", 10),
            connect_timeout_s=number("GATEWAY_CONNECT_TIMEOUT_S", 3.05),
            read_timeout_s=number("GATEWAY_READ_TIMEOUT_S", 10.0),
            create_timeout_s=number("GATEWAY_CREATE_TIMEOUT_S", 5.0),
            breaker_threshold=integer("BREAKER_THRESHOLD", 5),
            breaker_cooldown_s=number("BREAKER_COOLDOWN_S", 30.0),
            breaker_max_cooldown_s=number("BREAKER_MAX_COOLDOWN_S", 600.0),
            max_body_bytes=integer("MAX_BODY_BYTES", 64 * 1024),
            webhook_tolerance_s=number("WEBHOOK_TOLERANCE_S", 300.0),
            ready_max_sweep_age_s=number("READY_MAX_SWEEP_AGE_S", 60.0),
            log_level=(get("LOG_LEVEL") or "INFO").upper(),
            gateways=gateways,
            policies=policies,
            notify=NotifySettings.from_env(env),
        )
        longest_call = settings.connect_timeout_s + max(
            settings.read_timeout_s, settings.create_timeout_s
        )
        if settings.lease_s <= longest_call:
            raise ConfigError(
                f"RECONCILER_LEASE_S ({settings.lease_s:g}) must exceed the longest gateway call "
                f"(connect + read timeout = {longest_call:g} s), or a lease could expire mid-call"
            )
        return settings


# --- Outbound notifications (merchant webhooks): the RECONCILER_NOTIFY_* variables ---------

_DELIVERY_FIELDS = {
    "base_delay": "NOTIFY_BASE_DELAY_S",
    "factor": "NOTIFY_FACTOR",
    "max_delay": "NOTIFY_MAX_DELAY_S",
    "give_up_after": "NOTIFY_GIVE_UP_AFTER_S",
}


@dataclass(frozen=True)
class NotifySettings:
    """How deliveries to merchants' endpoints are retried, timed out and allowed to go."""

    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    timeout_s: float = 15.0
    allow_private: bool = False
    concurrency: int = 16  # delivery attempts in flight per process, across endpoints
    max_in_flight_per_endpoint: int = 4  # so one slow endpoint cannot take every slot
    disable_after_s: float = 5 * 24 * 3600.0  # an endpoint failing this long is disabled

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NotifySettings:
        """Read the `RECONCILER_NOTIFY_*` variables; unset or empty ones keep their default."""

        def number(name: str, default: float) -> float:
            raw = env.get(f"RECONCILER_{name}") or None
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ConfigError(f"RECONCILER_{name} must be a number, got {raw!r}")
            return value

        defaults = DeliveryPolicy()
        values = {
            attr: number(var, getattr(defaults, attr)) for attr, var in _DELIVERY_FIELDS.items()
        }
        try:
            policy = DeliveryPolicy(**values)
        except ValueError as exc:
            raise ConfigError(f"delivery policy: {exc}") from None
        timeout = number("NOTIFY_TIMEOUT_S", 15.0)
        if timeout <= 0:
            raise ConfigError("RECONCILER_NOTIFY_TIMEOUT_S must be positive")
        allow = (env.get("RECONCILER_NOTIFY_ALLOW_PRIVATE") or "0").lower()
        if allow not in ("0", "1", "true", "false", "yes", "no"):
            raise ConfigError(f"RECONCILER_NOTIFY_ALLOW_PRIVATE must be 0 or 1, got {allow!r}")
        concurrency = int(number("NOTIFY_CONCURRENCY", 16))
        per_endpoint = int(number("NOTIFY_MAX_IN_FLIGHT_PER_ENDPOINT", 4))
        disable_after = number("NOTIFY_DISABLE_AFTER_S", 5 * 24 * 3600.0)
        if concurrency < 1 or per_endpoint < 1 or disable_after <= 0:
            raise ConfigError(
                "RECONCILER_NOTIFY_CONCURRENCY, _MAX_IN_FLIGHT_PER_ENDPOINT and "
                "_DISABLE_AFTER_S must be positive"
            )
        return cls(
            policy=policy,
            timeout_s=timeout,
            allow_private=allow in ("1", "true", "yes"),
            concurrency=concurrency,
            max_in_flight_per_endpoint=per_endpoint,
            disable_after_s=disable_after,
        )
