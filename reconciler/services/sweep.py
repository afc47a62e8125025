"""The sweep: one process's engine, driving every kind of due row (payment polls first)."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime

from reconciler.adapters import repository
from reconciler.domain.breaker import CircuitBreaker
from reconciler.services.context import Context
from reconciler.services.engine import Engine, EngineConfig, TickReport
from reconciler.services.polling import PaymentPolls

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    """What one sweep did, for logs, metrics and tests."""

    claimed: int = 0
    polled: int = 0
    created: int = 0
    held_by_breaker: int = 0
    lost_leases: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # "gateway:outcome" -> count
    duration_s: float = 0.0


Observer = Callable[[SweepReport], None]


def engine_config(ctx: Context) -> EngineConfig:
    """Read the engine's limits from the settings."""
    settings = ctx.settings
    return EngineConfig(
        batch_size=settings.sweep_batch_size,
        lease_s=settings.lease_s,
        max_call_s=settings.connect_timeout_s
        + max(settings.read_timeout_s, settings.create_timeout_s),
        breaker_threshold=settings.breaker_threshold,
        breaker_cooldown_s=settings.breaker_cooldown_s,
        breaker_max_cooldown_s=settings.breaker_max_cooldown_s,
    )


class Sweeper:
    """Runs sweeps for one process: owns the engine, its breakers and its thread pool."""

    def __init__(self, ctx: Context, *, observer: Observer | None = None) -> None:
        self.ctx = ctx
        self.owner = f"sweep_{secrets.token_hex(8)}"
        self.polls = PaymentPolls(ctx)
        self.engine = Engine(
            ctx.sessions,
            [self.polls],
            owner=self.owner,
            config=engine_config(ctx),
            clock=ctx.clock,
            rand=ctx.rand,
        )
        for gateway in ctx.gateways:
            self.engine.breaker(self.polls.name, gateway)
        self.observer = observer
        self._lock = threading.Lock()

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        """Each gateway's breaker."""
        return {
            target: breaker
            for (kind, target), breaker in self.engine.breakers.items()
            if kind == self.polls.name
        }

    def close(self) -> None:
        self.engine.close()

    def sweep_once(self, now: datetime | None = None) -> SweepReport:
        """Claim due rows, make their calls with bounded concurrency, store every result.

        `now` pins the clock for the whole sweep (tests move it); by default each answer
        is stored at the time it arrives.
        """
        with self._lock:
            before = self.polls.counts.copy()
            tick = self.engine.run_once(now)
            report = self._report(tick, before)
            self._finish(report, now)
            return report

    def tick(self) -> None:
        """Start the calls of every due row there is room for; do not wait for them.

        Used by the in-process job: a slow call never holds up the next tick, and the
        observer hears of a tick once its last result is stored.
        """
        before = self.polls.counts.copy()
        tick, futures = self.engine.tick()
        if not futures:
            self._finish(self._report(tick, before), None)
            return
        remaining = [len(futures)]
        lock = threading.Lock()

        def done(_: Future[None]) -> None:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                self._finish(self._report(tick, before), None)

        for future in futures:
            future.add_done_callback(done)

    def _report(self, tick: TickReport, before: dict[str, int]) -> SweepReport:
        counts = self.polls.counts
        prefix = f"{self.polls.name}:"
        return SweepReport(
            claimed=tick.claimed,
            polled=counts["poll"] - before.get("poll", 0),
            created=counts["create"] - before.get("create", 0),
            held_by_breaker=tick.held,
            lost_leases=tick.lost_leases,
            outcomes={
                key.removeprefix(prefix): n
                for key, n in tick.outcomes.items()
                if key.startswith(prefix)
            },
            duration_s=tick.duration_s,
        )

    def _finish(self, report: SweepReport, now: datetime | None) -> None:
        try:
            with self.ctx.sessions.begin() as session:
                repository.record_heartbeat(
                    session, self.owner, now or self.ctx.clock(), report.claimed
                )
        except Exception:
            log.exception("could not record the sweep heartbeat")
        if self.observer is not None:
            self.observer(report)
        if report.claimed:
            log.info(
                "sweep done",
                extra={
                    "claimed": report.claimed,
                    "polled": report.polled,
                    "held": report.held_by_breaker,
                    "lost_leases": report.lost_leases,
                    "duration_s": round(report.duration_s, 3),
                },
            )
