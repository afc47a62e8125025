"""Settings: every `RECONCILER_*` variable declared once, read into one frozen object.

Longer than most modules: every setting is declared here, once, on purpose. Each is one
dataclass field: its default, its variable and its help are written there and nowhere
else; `from_env` reads them (or `<VARIABLE>_FILE`, a file holding the value), `child_env`
writes them back for a child process, and the CLI's help quotes them. A small declarative
reader rather than pydantic-settings: the per-gateway poll overrides are a family of
variables (`RECONCILER_<GATEWAY>_POLL_*`) and several variables are not named after their
field (`RECONCILER_GATEWAY_READ_TIMEOUT_S`), both of which need custom sources there, while
here they are one table and a loop, with no dependency for the runtime to carry.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import config_checks as checks
from reconciler.config_auto import auto_env, auto_gateways, without_auto
from reconciler.config_parts import (
    NOTIFY_LEASE_MARGIN_S as NOTIFY_LEASE_MARGIN_S,
)
from reconciler.config_parts import (
    POLICY_VARIABLES,
    NotifySettings,
    Secrets,
    number,
    policy_env,
    policy_from,
)
from reconciler.config_parts import GatewayConfig as GatewayConfig
from reconciler.domain.delivery import DeliveryPolicy
from reconciler.domain.policy import PollPolicy

ConfigError = checks.ConfigError  # a configuration value that cannot be used
PREFIX = "RECONCILER_"
GATEWAYS = ("simulator", "stripe", "razorpay")
# The Stripe API version the adapter's field mapping was written against.
STRIPE_API_VERSION = "2024-06-20"


def setting(default: Any, help: str, *, env: str | None = None) -> Any:
    """Declare a setting: its default, its help line and (when not the field name) its variable."""
    return field(default=default, metadata={"help": help, "env": env})


@dataclass(frozen=True)
class Settings:
    database_url: str = setting("sqlite:///reconciler.db", "SQLAlchemy database URL")
    admin_token: str | None = setting(None, "bearer token for /admin (unset: admin off)")
    sweep_interval_s: float = setting(1.0, "seconds between sweeps (fractions allowed)")
    host: str = setting("127.0.0.1", "address `serve` binds")
    port: int = setting(8000, "port `serve` binds")
    workers: int = setting(1, "server worker processes")
    threads: int = setting(8, "request threads per worker")
    client_timeout_s: float = setting(
        10.0, "a request not read whole within this (or a connection idle as long) is cut"
    )
    max_connections: int = setting(1000, "open client sockets per server process")
    sweep_enabled: bool = setting(True, "run the sweep inside `serve`")
    sweep_batch_size: int = setting(200, "payments claimed per sweep")
    sweep_concurrency: int = setting(16, "gateway calls in flight per sweep")
    lease_s: float = setting(60.0, "seconds a claimed payment stays claimed")
    db_pool_size: int = setting(10, "database connections per process")
    connect_timeout_s: float = setting(
        3.05, "gateway connect timeout", env="GATEWAY_CONNECT_TIMEOUT_S"
    )
    read_timeout_s: float = setting(10.0, "gateway read timeout", env="GATEWAY_READ_TIMEOUT_S")
    create_timeout_s: float = setting(
        5.0, "gateway read timeout when creating", env="GATEWAY_CREATE_TIMEOUT_S"
    )
    breaker_threshold: int = setting(5, "failures in a row that open a gateway's breaker")
    breaker_cooldown_s: float = setting(30.0, "first breaker cool-down")
    breaker_max_cooldown_s: float = setting(600.0, "longest breaker cool-down")
    max_body_bytes: int = setting(64 * 1024, "largest request body accepted")
    webhook_tolerance_s: float = setting(300.0, "accepted webhook timestamp skew")
    ready_max_sweep_age_s: float = setting(60.0, "/readyz fails when the last sweep is older")
    log_level: str = setting("INFO", "log level: DEBUG, INFO, WARNING, ERROR or CRITICAL")
    temp_dir: str | None = setting(None, "directory for lock files (unset: TMPDIR, else /tmp)")
    simulator_url: str | None = setting(None, "the simulator's address (set: gateway on)")
    simulator_api_key: str | None = setting(None, "bearer key the simulator requires")
    simulator_webhook_secret: Secrets = setting(
        (), "whsec_ secret(s) of simulator webhooks, comma-separated"
    )
    simulator_port: int = setting(8100, "port of the simulator `make run` starts")
    listen_port: int = setting(
        8200, "port `make run`'s dev endpoint expects `reconciler listen` on"
    )
    stripe_api_base: str = setting("https://api.stripe.com", "Stripe API address")
    stripe_api_key: str | None = setting(None, "Stripe secret key (set: gateway on)")
    stripe_webhook_secret: Secrets = setting((), "Stripe whsec_ secret(s), comma-separated")
    stripe_api_version: str = setting(STRIPE_API_VERSION, "Stripe-Version sent with every call")
    razorpay_api_base: str = setting("https://api.razorpay.com", "Razorpay API address")
    razorpay_key_id: str | None = setting(None, "Razorpay key id")
    razorpay_key_secret: str | None = setting(None, "Razorpay key secret")
    razorpay_webhook_secret: Secrets = setting((), "Razorpay webhook secret(s), comma-separated")
    secrets_key: Secrets = setting((), "Fernet key(s) sealing stored secrets; the first encrypts")
    stripe_cancel_abandoned: bool = setting(
        False, "cancel an abandoned intent at Stripe first (cancellation_reason=abandoned)"
    )
    # The polling schedule: `RECONCILER_POLL_*` for every gateway, and per-gateway
    # overrides `RECONCILER_<GATEWAY>_POLL_*` (only the gateways that differ are kept).
    poll: PollPolicy = field(default_factory=PollPolicy)
    policies: Mapping[str, PollPolicy] = field(default_factory=dict)
    first_delay_auto: frozenset[str] = frozenset()  # gateways whose first delay is `auto`
    poll_first_delay_quantile: float = setting(0.95, "auto: quantile of terminal webhook delays")
    poll_first_delay_min_s: float = setting(5.0, "auto: shortest first delay")
    poll_first_delay_max_s: float = setting(600.0, "auto: longest first delay")
    # Outbound notifications (merchant webhooks).
    notify_base_delay_s: float = setting(5.0, "first retry delay of a failed delivery")
    notify_factor: float = setting(2.0, "growth of the delay between delivery attempts")
    notify_max_delay_s: float = setting(36000.0, "longest delay between delivery attempts")
    notify_give_up_after_s: float = setting(259200.0, "a delivery fails after this long")
    notify_timeout_s: float = setting(15.0, "seconds a merchant endpoint has to answer")
    notify_allow_private: bool = setting(
        False, "allow loopback/private endpoint addresses (development and tests only)"
    )
    notify_concurrency: int = setting(16, "delivery attempts in flight per process")
    notify_max_in_flight_per_endpoint: int = setting(4, "delivery attempts in flight per endpoint")
    notify_max_in_flight_per_merchant: int = setting(
        4, "delivery attempts in flight per merchant, across replicas"
    )
    notify_max_endpoints: int = setting(16, "webhook endpoints per merchant")
    notify_disable_after_s: float = setting(432000.0, "an endpoint failing this long is disabled")

    def __post_init__(self) -> None:
        for problem in (
            checks.database_url_problem(self.database_url),
            checks.log_level_problem(self.log_level),
            checks.admin_token_problem(self.admin_token),
        ):
            if problem is not None:
                raise ConfigError(problem)
        try:
            self.notify  # noqa: B018 - builds (and so checks) the delivery policy
        except ValueError as exc:
            raise ConfigError(f"RECONCILER_NOTIFY_*: {exc}") from None
        if not 0 < self.client_timeout_s < 1e6 or not 0 < self.max_connections < 1e6:
            raise ConfigError(
                "RECONCILER_CLIENT_TIMEOUT_S and RECONCILER_MAX_CONNECTIONS must be positive"
            )
        low, high = self.poll_first_delay_min_s, self.poll_first_delay_max_s
        if not 0 < self.poll_first_delay_quantile <= 1 or not 0 <= low <= high:
            raise ConfigError("need 0 < RECONCILER_POLL_FIRST_DELAY_QUANTILE <= 1, MIN_S <= MAX_S")
        if self.notify_timeout_s <= 0:
            raise ConfigError("RECONCILER_NOTIFY_TIMEOUT_S must be positive")
        limits = (
            self.notify_concurrency,
            self.notify_max_in_flight_per_endpoint,
            self.notify_max_in_flight_per_merchant,
            self.notify_max_endpoints,
        )
        if min(limits) < 1:
            raise ConfigError(
                "RECONCILER_NOTIFY_CONCURRENCY, _MAX_IN_FLIGHT_PER_ENDPOINT, "
                "_MAX_IN_FLIGHT_PER_MERCHANT and _MAX_ENDPOINTS must be at least 1"
            )
        if self.lease_s <= self.notify_timeout_s + NOTIFY_LEASE_MARGIN_S:
            raise ConfigError(
                f"RECONCILER_LEASE_S ({self.lease_s:g}) must exceed "
                f"RECONCILER_NOTIFY_TIMEOUT_S ({self.notify_timeout_s:g}) by "
                f"{NOTIFY_LEASE_MARGIN_S:g} s: a delivery starts only if it fits in its lease"
            )
        if self.notify_disable_after_s <= 0:
            raise ConfigError("RECONCILER_NOTIFY_DISABLE_AFTER_S must be positive")
        if not self.sweep_interval_s > 0:
            raise ConfigError("RECONCILER_SWEEP_INTERVAL_S must be positive")
        longest_call = self.connect_timeout_s + max(self.read_timeout_s, self.create_timeout_s)
        if self.lease_s <= longest_call:
            raise ConfigError(
                f"RECONCILER_LEASE_S ({self.lease_s:g}) must exceed the longest gateway call "
                f"(connect + read timeout = {longest_call:g} s), or a lease could expire mid-call"
            )

    @property
    def notify(self) -> NotifySettings:
        """Return how deliveries to merchants' endpoints are retried and limited."""
        return NotifySettings(
            policy=DeliveryPolicy(
                base_delay=self.notify_base_delay_s,
                factor=self.notify_factor,
                max_delay=self.notify_max_delay_s,
                give_up_after=self.notify_give_up_after_s,
            ),
            timeout_s=self.notify_timeout_s,
            allow_private=self.notify_allow_private,
            concurrency=self.notify_concurrency,
            max_in_flight_per_endpoint=self.notify_max_in_flight_per_endpoint,
            max_in_flight_per_merchant=self.notify_max_in_flight_per_merchant,
            max_endpoints=self.notify_max_endpoints,
            disable_after_s=self.notify_disable_after_s,
        )

    def policy(self, gateway: str) -> PollPolicy:
        """Return the polling schedule for one gateway (its override, else the common one)."""
        return self.policies.get(gateway) or self.poll

    def gateway(self, name: str) -> GatewayConfig:
        """Return one gateway's address and credentials."""
        if name == "simulator":
            return GatewayConfig(
                name,
                api_base=self.simulator_url,
                api_key=self.simulator_api_key,
                webhook_secrets=self.simulator_webhook_secret,
            )
        if name == "stripe":
            return GatewayConfig(
                name,
                api_base=self.stripe_api_base,
                api_key=self.stripe_api_key,
                webhook_secrets=self.stripe_webhook_secret,
                api_version=self.stripe_api_version,
            )
        if name == "razorpay":
            return GatewayConfig(
                name,
                api_base=self.razorpay_api_base,
                api_key=self.razorpay_key_id,
                api_secret=self.razorpay_key_secret,
                webhook_secrets=self.razorpay_webhook_secret,
            )
        return GatewayConfig(name)

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with some settings changed (validated like the original)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `RECONCILER_*` variables (the process environment by default)."""
        env = os.environ if environ is None else environ
        env = {**env, **checks.read_files(env, known_variables())}  # RECONCILER_<NAME>_FILE
        auto = auto_gateways(env, PREFIX, GATEWAYS)
        env = without_auto(env, PollPolicy().first_delay)
        values: dict[str, Any] = {"first_delay_auto": auto}
        for spec in declared():
            raw = env.get(spec.env)
            if raw not in (None, ""):
                values[spec.name] = spec.parse(raw)
        values["poll"] = policy_from(env, "", PollPolicy())
        values["policies"] = {
            gw: policy
            for gw in GATEWAYS
            if (policy := policy_from(env, f"{gw.upper()}_", values["poll"])) != values["poll"]
        }
        if "log_level" in values:
            values["log_level"] = values["log_level"].upper()
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """Return the variables `from_env` rebuilds these settings from (non-defaults only)."""
        env = {
            spec.env: spec.format(value)
            for spec in declared()
            if (value := getattr(self, spec.name)) != spec.default
        }
        if self.poll != PollPolicy():
            env.update(policy_env("", self.poll))
        for gw, policy in self.policies.items():
            if policy != self.poll:
                env.update(policy_env(f"{gw.upper()}_", policy))
        return env | auto_env(PREFIX, self.first_delay_auto, GATEWAYS)

    def child_env(self, base: Mapping[str, str] | None = None, **changes: Any) -> dict[str, str]:
        """Return the environment for a child process that should run with these settings.

        `base` (the process environment by default) is kept except its `RECONCILER_*`
        variables, so nothing of the caller's own configuration leaks into the child;
        `changes` are settings by field name, e.g. `poll=PollPolicy(...)`, `port=8001`.
        """
        inherited = os.environ if base is None else base
        env = {k: v for k, v in inherited.items() if not k.startswith(PREFIX)}
        env.update(self.replace(**changes).to_env())
        return env


@dataclass(frozen=True)
class Spec:
    """How one declared setting is read from and written to its variable."""

    name: str
    env: str
    kind: type
    optional: bool
    default: Any
    help: str

    def parse(self, raw: str) -> Any:
        if self.kind is bool:
            word = raw.strip().lower()
            if word not in ("0", "1", "false", "true", "no", "yes", "off", "on"):
                raise ConfigError(f"{self.env} must be 0 or 1, got {raw!r}")
            return word in ("1", "true", "yes", "on")
        if self.kind is int:
            try:
                return int(raw)
            except ValueError:
                raise ConfigError(f"{self.env} must be an integer, got {raw!r}") from None
        if self.kind is float:
            return number(self.env, raw)
        if self.kind is tuple:
            # Several comma-separated secrets are accepted while a key is being rotated.
            return tuple(s.strip() for s in raw.split(",") if s.strip())
        return raw

    def format(self, value: Any) -> str:
        if value is None:
            return ""
        if self.kind is bool:
            return "1" if value else "0"
        if self.kind is tuple:
            return ",".join(value)
        return str(value)


def declared() -> tuple[Spec, ...]:
    """List every setting read from a single variable, in declaration order."""
    return _SPECS


def known_variables() -> set[str]:
    """Return every variable a setting is read from (the per-gateway poll family included)."""
    prefixes = ("", *(f"{gw.upper()}_" for gw in GATEWAYS))
    policy = {PREFIX + p + suffix for p in prefixes for suffix in POLICY_VARIABLES.values()}
    return {item.env for item in _SPECS} | policy


def spec(name: str) -> Spec:
    """Return the declaration of one setting by field name."""
    for item in _SPECS:
        if item.name == name:
            return item
    raise KeyError(name)


def _specs() -> tuple[Spec, ...]:
    hints = typing.get_type_hints(Settings)
    specs = []
    for f in dataclasses.fields(Settings):
        if "help" not in f.metadata:
            continue
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = isinstance(hint, types.UnionType) and type(None) in args
        kind = next(a for a in args if a is not type(None)) if optional else hint
        kind = typing.get_origin(kind) or kind
        env = PREFIX + (f.metadata["env"] or f.name.upper())
        specs.append(Spec(f.name, env, kind, optional, f.default, f.metadata["help"]))
    return tuple(specs)


_SPECS = _specs()
