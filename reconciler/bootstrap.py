"""The one place that chooses implementations: database, gateways, clock, randomness."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import datetime

from reconciler.adapters import wakeups
from reconciler.adapters.db import make_engine, make_sessionmaker
from reconciler.adapters.gateways.base import Gateway
from reconciler.adapters.gateways.transport import HttpClient
from reconciler.config import Settings
from reconciler.domain.policy import Random
from reconciler.services.context import Context, utc_now

__all__ = ["Context", "bootstrap", "build_gateways", "utc_now"]


def build_gateways(settings: Settings, http: HttpClient) -> dict[str, Gateway]:
    """Instantiate every gateway with credentials or a webhook secret.

    A gateway without credentials is off for payments (registering one is a 400), but
    with a webhook secret its webhooks are still verified and kept, so nothing the
    gateway delivers is lost while the credentials are being set up.
    """
    from reconciler.adapters.gateways.razorpay import RazorpayGateway
    from reconciler.adapters.gateways.simulator import SimulatorGateway
    from reconciler.adapters.gateways.stripe import StripeGateway

    classes: dict[str, Callable[..., Gateway]] = {
        "simulator": SimulatorGateway,
        "stripe": StripeGateway,
        "razorpay": RazorpayGateway,
    }
    timeout = (settings.connect_timeout_s, settings.read_timeout_s)
    create_timeout = (settings.connect_timeout_s, settings.create_timeout_s)
    gateways: dict[str, Gateway] = {}
    for name, cls in classes.items():
        config = settings.gateway(name)
        if config.enabled or config.webhook_secrets:
            gateways[name] = cls(
                config,
                session=http,
                timeout=timeout,
                create_timeout=create_timeout,
                webhook_tolerance_s=settings.webhook_tolerance_s,
            )
    return gateways


def bootstrap(
    settings: Settings,
    *,
    clock: Callable[[], datetime] | None = None,
    rand: Random | None = None,
    gateways: dict[str, Gateway] | None = None,
    resolver: Callable[[str, int], Sequence[str]] | None = None,
) -> Context:
    """Wire a context from settings; tests pass their own clock, randomness or gateways."""
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
    http = HttpClient(pool_size=max(8, settings.sweep_concurrency))
    sessions = make_sessionmaker(engine)
    wakeups.install(sessions)
    return Context(
        settings=settings,
        engine=engine,
        sessions=sessions,
        readers=make_sessionmaker(engine, read_only=True),
        gateways=build_gateways(settings, http) if gateways is None else gateways,
        clock=clock or utc_now,
        rand=rand or random.SystemRandom().random,
        http=http,
        notify=settings.notify.policy,
        resolver=resolver,
    )
