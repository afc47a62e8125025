"""What every use case is handed: settings, sessions, gateways, a clock and randomness."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from reconciler.adapters.gateways.base import Gateway
from reconciler.adapters.gateways.transport import HttpClient
from reconciler.config import Settings
from reconciler.domain.delivery import DeliveryPolicy
from reconciler.domain.policy import PollPolicy, Random
from reconciler.services.completer import GroupCommit
from reconciler.services.key_cache import KeyCache
from reconciler.services.reliability import Reliability
from reconciler.services.schedule import Scheduling

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    """Everything a use case needs, built once per process by `reconciler.bootstrap`."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    gateways: dict[str, Gateway]
    readers: sessionmaker[Session] | None = None  # read-only sessions; see `read`
    clock: Clock = utc_now
    rand: Random = field(default_factory=lambda: random.SystemRandom().random)
    http: HttpClient | None = None
    notify: DeliveryPolicy | None = None  # merchant notifications; None: nobody is told
    keys: KeyCache = field(default_factory=KeyCache)  # recently accepted API keys
    # Group commit: the engine's results and webhooks share commits (one writer at a time).
    writer: GroupCommit | None = None
    # How endpoint host names are looked up (None: the system's getaddrinfo); tests make
    # names slow or point them at loopback with their own.
    resolver: Callable[[str, int], Sequence[str]] | None = None
    # Webhook reliability counts and the first delays in force (`auto` included).
    reliability: Reliability = field(init=False)

    def __post_init__(self) -> None:
        if self.writer is None:
            self.writer = GroupCommit(self.sessions)
        self.reliability = Reliability(self.settings)

    def scheduling(self, gateway: str) -> Scheduling:
        """Return what storing a sync decision needs for one gateway's payments."""
        return Scheduling(policy=self.policy(gateway), rand=self.rand, notify=self.notify)

    def read(self) -> Session:
        """Open a session for reading only (on SQLite it does not queue behind writers)."""
        return (self.readers or self.sessions)()

    def policy(self, gateway: str) -> PollPolicy:
        """Return the poll policy of one gateway, with the first delay in force."""
        return self.reliability.policy(gateway, self.clock())

    def can_register(self, gateway: str) -> bool:
        """Say whether payments may be registered for this gateway (credentials are set)."""
        return gateway in self.gateways and self.settings.gateway(gateway).enabled

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
        self.engine.dispose()
