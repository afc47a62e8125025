"""The sweep: one process's engine, driving every kind of due row (payment polls first)."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Collection
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from reconciler.adapters import repository, wakeups
from reconciler.domain.breaker import CircuitBreaker
from reconciler.services.context import Context
from reconciler.services.delivery import Deliveries
from reconciler.services.engine import Engine, EngineConfig, TickReport
from reconciler.services.polling import PaymentPolls

log = logging.getLogger(__name__)

# The longest the sweep goes without reading the earliest due time from the database.
# Rows made due sooner are announced (this process at once; other replicas through
# PostgreSQL's NOTIFY), so this only bounds what no announcement reached, such as a
# lease left to expire by a crashed replica.
IDLE_CHECK_S = 30.0
# How often an idle sweeper still says it is alive (for /readyz).
HEARTBEAT_S = 10.0
# A busy sweeper says so at most this often: a heartbeat is a commit, not part of the work.
BUSY_HEARTBEAT_S = 5.0
# How often the breakers of deleted endpoints are dropped from memory (and so metrics).
PRUNE_BREAKERS_S = 60.0


@dataclass
class SweepReport:
    """What one sweep did, for logs, metrics and tests."""

    claimed: int = 0
    polled: int = 0
    created: int = 0
    held_by_breaker: int = 0
    lost_leases: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # "gateway:outcome" -> count
    deliveries: dict[str, int] = field(default_factory=dict)  # "2xx", "5xx", "error" -> count
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
        self.deliveries = Deliveries(ctx)
        self.engine = Engine(
            ctx.sessions,
            [self.polls, self.deliveries],
            owner=self.owner,
            config=engine_config(ctx),
            clock=ctx.clock,
            rand=ctx.rand,
            writer=ctx.writer,
        )
        for gateway in ctx.gateways:
            self.engine.breaker(self.polls.name, gateway)
        self.observer = observer
        self.on_wake: Callable[[datetime], None] | None = None  # set by the scheduler
        self._lock = threading.Lock()
        self._plan_lock = threading.Lock()
        self._earliest: datetime | None = None  # the earliest due time this process knows
        self._due_kinds: set[str] = set()  # kinds with rows due at the last read ("": heard)
        self._heard: datetime | None = None  # the earliest announced since the last read
        self._checked_at: datetime | None = None
        self._beat_at: datetime | None = None
        self._pruned_at: datetime | None = None
        self._listener: wakeups.Listener | None = None

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
            self._finish(report, now, beat=True)
            return report

    def listen(self, on_wake: Callable[[datetime], None]) -> None:
        """Hear of rows made due sooner (here, and from other replicas on PostgreSQL)."""
        self.on_wake = on_wake
        wakeups.subscribe(self.ctx.sessions, self.announce)
        url = self.ctx.settings.database_url
        if url.startswith("postgresql"):
            self._listener = wakeups.Listener(url, self.announce)
            self._listener.start()

    def stop_listening(self) -> None:
        self.on_wake = None
        if self._listener is not None:
            self._listener.stop()
            self._listener = None

    def announce(self, at: datetime, kinds: frozenset[str] = frozenset((wakeups.UNKNOWN,))) -> None:
        """Hear that rows of `kinds` are due at `at`: wake then if that is sooner than planned."""
        with self._plan_lock:
            self._heard = at if self._heard is None else min(self._heard, at)
            # The next tick claims these kinds (all of them for an unnamed due time).
            self._due_kinds |= kinds
            # An earliest time already past promises no wake: its rows are claimed, or
            # wait for a slot, and nothing may be planned until a call finishes.
            stale = self._earliest is not None and self._earliest <= self.ctx.clock()
            sooner = self._earliest is None or at < self._earliest or stale
            if sooner:
                self._earliest = min(at, self._earliest) if self._earliest else at
        if sooner and self.on_wake is not None:
            self.on_wake(at)

    def tick(self) -> None:
        """Start the calls of every due row there is room for; do not wait for them.

        Used by the in-process job. Nothing is read from the database while the
        earliest known due time is still ahead (and the idle check is not due): an idle
        service makes no query per tick. A slow call never holds up the next tick, and
        the observer hears of a tick once its last result is stored.
        """
        now = self.ctx.clock()
        if not self._worth_a_look(now):
            if self._beat_at is None or now - self._beat_at >= timedelta(seconds=HEARTBEAT_S):
                self._finish(SweepReport(), now, beat=True)
            return
        before = self.polls.counts.copy()
        with self._plan_lock:
            # Only the kinds with rows due: an idle kind costs no claim statement.
            due = None if not self._due_kinds or "" in self._due_kinds else set(self._due_kinds)
        tick, futures = self.engine.tick(kinds=due)
        self._replan(now, claimed_nothing=tick.claimed == 0)
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
            self._refill()

        for future in futures:
            future.add_done_callback(done)

    def _worth_a_look(self, now: datetime) -> bool:
        with self._plan_lock:
            if self._checked_at is None:
                return True  # never looked: nothing is known
            if self._earliest is not None and self._earliest <= now:
                return True
            return now - self._checked_at >= timedelta(seconds=IDLE_CHECK_S)

    def _replan(self, now: datetime, *, claimed_nothing: bool = False) -> None:
        """Read when the next row is due and ask to be woken then.

        `claimed_nothing`: the tick found due rows but claimed none (every one belongs to
        a merchant at its cap of deliveries in flight): waking at once would spin; a call
        finishing (`_refill`), an announcement or the interval wakes the sweep instead.
        """
        with self._plan_lock:
            self._heard = None
        with self.ctx.read() as session:
            found = {
                kind.name: repository.earliest_due(session, kind.queue, now)
                for kind in self.engine.kinds
            }
        due = {name: at for name, at in found.items() if at is not None}
        # A kind whose rows are due but whose slots are all busy is woken by its calls
        # finishing (`_refill`): waking now would only spin on the other kinds' room.
        startable = [
            at
            for name, at in due.items()
            if at > now or (not claimed_nothing and self.engine.has_free_slots(kinds=(name,)))
        ]
        with self._plan_lock:
            if self._heard is not None:
                due[""] = self._heard  # announced while we were reading (kind unknown)
                startable.append(self._heard)
            self._earliest = min(due.values()) if due else None
            self._due_kinds = {name for name, at in due.items() if at <= now}
            self._checked_at = now
        if startable and self.on_wake is not None:
            self.on_wake(min(startable))

    def _refill(self) -> None:
        """Wake at once when calls finish and due rows are still waiting for a slot."""
        with self._plan_lock:
            waiting = self._earliest is not None and self._earliest <= self.ctx.clock()
            # Only the kinds with rows waiting count: an idle kind's free slots say nothing.
            kinds = None if "" in self._due_kinds else set(self._due_kinds)
        if (
            waiting
            and self.on_wake is not None
            and self.engine.has_free_slots(quarter=True, kinds=kinds)
        ):
            self.on_wake(self.ctx.clock())

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
            deliveries=_by_last_part(tick.outcomes, f"{self.deliveries.name}:"),
            duration_s=tick.duration_s,
        )

    def _finish(self, report: SweepReport, now: datetime | None, *, beat: bool = False) -> None:
        at = now or self.ctx.clock()
        if self._pruned_at is None or at - self._pruned_at >= timedelta(seconds=PRUNE_BREAKERS_S):
            self._pruned_at = at
            try:
                self.prune_breakers()
            except Exception:
                log.exception("could not prune the endpoints' breakers")
        last = self._beat_at
        if beat or last is None or at - last >= timedelta(seconds=BUSY_HEARTBEAT_S):
            self._beat_at = at
            try:
                with self.ctx.sessions.begin() as session:
                    repository.record_heartbeat(session, self.owner, at, report.claimed)
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

    def prune_breakers(self) -> None:
        """Forget the breakers of endpoints deleted since they were made."""

        def live(endpoint_ids: Collection[str]) -> Collection[str]:
            with self.ctx.read() as session:
                return repository.live_endpoint_ids(session, sorted(endpoint_ids))

        self.engine.forget(self.deliveries.name, live)


def _by_last_part(outcomes: dict[str, int], prefix: str) -> dict[str, int]:
    """Sum `kind:target:outcome` counters of one kind by outcome."""
    totals: dict[str, int] = {}
    for key, count in outcomes.items():
        if key.startswith(prefix):
            outcome = key.rsplit(":", 1)[-1]
            totals[outcome] = totals.get(outcome, 0) + count
    return totals
