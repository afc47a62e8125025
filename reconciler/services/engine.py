"""A per-row backoff engine: claim due rows of a kind under a lease, call, decide, store.

Longer than most modules: the kind protocol and the engine that drives it belong together.

The engine knows nothing about payments. A *kind* of work names its queue (which table
and columns, declared in the repository), and brings four small pieces: how to read a
claimed row, whom a row calls (the breaker's target), the call itself, and how to store
its result (where the kind's pure decision runs). The engine supplies the rest: leases,
bounded concurrency, a breaker per target, an optional cap on calls in flight per
target, and the rule that a result is stored only while its lease is still held.

`tick()` claims only as many rows as it has free slots and hands them to a thread pool
without waiting, so a slow target never holds up the next tick; `run_once()` is a tick
that waits for its own calls (tests, `reconciler sweep`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic

from sqlalchemy.orm import Session, sessionmaker

from reconciler.adapters import repository
from reconciler.domain.backoff import Random, jittered
from reconciler.domain.breaker import CircuitBreaker
from reconciler.services import breaker_log
from reconciler.services.completer import GroupCommit
from reconciler.services.work import (
    Done,
    Hold,
    Kind,
    Outcome,
    RowT,
    Signal,
)

log = logging.getLogger(__name__)

# A row whose kind cannot call it (its gateway is not configured) is looked at again then.
NOT_CALLABLE_HOLD_S = 60.0
# Why a row was held without a call (`Hold.why`, as the kind reads it in `complete`).
CIRCUIT_OPEN = "circuit open"
NOT_CALLABLE = "not configured"
TARGET_BUSY = "target busy"
# At most this many claims per kind and tick (more only while rows were deferred).
CLAIM_ROUNDS = 4

Clock = Callable[[], datetime]


@dataclass
class TickReport:
    """What one tick did, for logs, metrics and tests."""

    claimed: int = 0
    called: int = 0
    held: int = 0
    deferred: int = 0
    lost_leases: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    duration_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, kind: str, target: str, outcome: str) -> None:
        with self._lock:
            self.outcomes[f"{kind}:{target}:{outcome}"] += 1


@dataclass(frozen=True)
class EngineConfig:
    """How much the engine may do at once and how long a lease lasts."""

    batch_size: int = 200
    lease_s: float = 60.0
    max_call_s: float = 13.05  # the longest a call can take (connect + read timeouts)
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 30.0
    breaker_max_cooldown_s: float = 600.0
    defer_s: float = 0.25  # how far a row over its target's in-flight cap is pushed back


AnyKind = Kind[Any, Any]


class _Slot(Generic[RowT]):
    def __init__(self, kind: AnyKind, row: RowT, target: str | None) -> None:
        self.kind = kind
        self.row = row
        self.target = target


class _Completion:
    """A batched kind's completion as a group-commit batch: its rows, this engine's lease."""

    def __init__(self, kind: Kind[Any, Any], owner: str) -> None:
        self.name = f"complete:{kind.name}:{owner}"  # one group per engine: its lease
        self.kind = kind
        self.owner = owner

    def write(self, session: Session, items: Sequence[Done[Any, Any]]) -> list[bool]:
        return self.kind.complete(session, items, self.owner)


class Engine:
    """Drive due rows of several kinds through their calls; one per process."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        kinds: Sequence[AnyKind],
        *,
        owner: str,
        config: EngineConfig,
        clock: Clock,
        rand: Random | None = None,
        writer: GroupCommit | None = None,
    ) -> None:
        self.sessions = sessions
        self.kinds = list(kinds)
        self.owner = owner
        self.config = config
        self.clock = clock
        self.rand = rand or random.SystemRandom().random
        self.breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._in_flight: Counter[tuple[str, str]] = Counter()
        self._busy: Counter[str] = Counter()  # calls in flight per kind
        self._lock = threading.Lock()
        self._tick_lock = threading.Lock()
        # Results are stored by group commit, shared with webhooks on SQLite (`Context.writer`).
        self.writer = writer or GroupCommit(sessions)
        self._completions = {kind.name: _Completion(kind, owner) for kind in self.kinds}
        # A pool per kind, as large as its slots: one kind's calls never wait for another's.
        self._pools = {
            kind.name: ThreadPoolExecutor(
                max_workers=max(1, kind.concurrency), thread_name_prefix=f"engine-{kind.name}"
            )
            for kind in self.kinds
        }

    def breaker(self, kind: str, target: str) -> CircuitBreaker:
        """Return the breaker for one target of one kind (made on first use)."""
        with self._lock:
            key = (kind, target)
            if key not in self.breakers:
                self.breakers[key] = CircuitBreaker(
                    threshold=self.config.breaker_threshold,
                    cooldown=self.config.breaker_cooldown_s,
                    max_cooldown=self.config.breaker_max_cooldown_s,
                )
            return self.breakers[key]

    def forget(self, kind: str, keep: Callable[[Collection[str]], Collection[str]]) -> None:
        """Drop the breakers of `kind`'s targets that `keep` no longer names (deleted ones)."""
        with self._lock:
            targets = [t for k, t in self.breakers if k == kind]
        kept = set(keep(targets))
        with self._lock:
            for target in targets:
                if target not in kept:
                    self.breakers.pop((kind, target), None)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)

    def run_once(self, now: datetime | None = None) -> TickReport:
        """Claim what is due, make the calls, and wait until every result is stored."""
        started = time.monotonic()
        report, futures = self.tick(now, whole_batch=True)
        wait(futures)
        for future in futures:
            future.result()
        report.duration_s = time.monotonic() - started  # claims, calls and stores
        return report

    def tick(
        self,
        now: datetime | None = None,
        *,
        whole_batch: bool = False,
        kinds: Collection[str] | None = None,
    ) -> tuple[TickReport, list[Future[None]]]:
        """Claim due rows up to the free slots and start their calls; do not wait.

        `now` pins the clock for every read of this tick (tests move it); by default
        each result is stored at the time it arrives. `kinds` names the kinds known to
        have rows due (None: all of them). `whole_batch` claims a whole batch
        whatever the free slots (the calls queue for the pool; a call that could no
        longer finish inside its lease is skipped).
        """
        with self._tick_lock:
            started = time.monotonic()
            clock: Clock = self.clock if now is None else (lambda: now)
            report = TickReport()
            at = clock()
            lease_until = at + timedelta(seconds=self.config.lease_s)
            futures: list[Future[None]] = []
            for kind in self.kinds:
                if kinds is not None and kind.name not in kinds:
                    continue
                # Rows deferred behind a busy target took no slot: claim again for the
                # slots they left, so a slow target's backlog (due first, deferred on
                # every claim) cannot keep other targets' rows waiting for the next tick.
                for _ in range(CLAIM_ROUNDS):
                    free = self.config.batch_size if whole_batch else self._free_slots(kind)
                    if free <= 0:
                        break
                    with self.sessions.begin() as session:
                        rows = repository.claim_due(
                            session,
                            kind.queue,
                            now=at,
                            limit=min(self.config.batch_size, free),
                            owner=self.owner,
                            lease_until=lease_until,
                        )
                    report.claimed += len(rows)
                    deferred = report.deferred
                    for claimed in rows:
                        row = kind.row(claimed)
                        futures.extend(self._dispatch(kind, row, clock, lease_until, report))
                    if whole_batch or not rows or report.deferred == deferred:
                        break
            report.duration_s = time.monotonic() - started
            return report, futures

    def has_free_slots(
        self, *, quarter: bool = False, kinds: Collection[str] | None = None
    ) -> bool:
        """Say whether some kind (of `kinds`, if named) has a free slot (a quarter, if asked)."""
        with self._lock:
            for kind in self.kinds:
                if kinds is not None and kind.name not in kinds:
                    continue
                wanted = max(1, kind.concurrency // 4) if quarter else 1
                if kind.concurrency - self._busy[kind.name] >= wanted:
                    return True
            return False

    def _free_slots(self, kind: AnyKind) -> int:
        with self._lock:
            return kind.concurrency - self._busy[kind.name]

    def _dispatch(
        self,
        kind: AnyKind,
        row: Any,
        clock: Clock,
        lease_until: datetime,
        report: TickReport,
    ) -> list[Future[None]]:
        target = kind.target(row)
        if target is None:
            until = clock() + timedelta(seconds=NOT_CALLABLE_HOLD_S)
            self._hold(kind, row, until, NOT_CALLABLE, clock(), report)
            return []
        cap = kind.max_in_flight_per_target
        with self._lock:
            key = (kind.name, target)
            if cap is not None and self._in_flight[key] >= cap:
                over_cap = True
            else:
                over_cap = False
                self._in_flight[key] += 1
                self._busy[kind.name] += 1
        if over_cap:
            # Its target is busy: let the rows of other targets go first.
            report.deferred += 1
            delay = jittered(self.config.defer_s, self.rand)
            until = clock() + timedelta(seconds=delay)
            self._hold(kind, row, until, TARGET_BUSY, clock(), report, counted=False)
            return []
        slot = _Slot(kind, row, target)
        return [self._pools[kind.name].submit(self._run, slot, clock, lease_until, report)]

    def _run(
        self, slot: _Slot[Any], clock: Clock, lease_until: datetime, report: TickReport
    ) -> None:
        kind, row, target = slot.kind, slot.row, slot.target or ""
        try:
            # A row waiting behind slow calls may outlive its lease; another process may
            # then claim it, and calling now could make the same call twice at once.
            longest = getattr(kind, "max_call_s", None) or self.config.max_call_s
            if clock() + timedelta(seconds=longest) > lease_until:
                report.count(kind.name, target, "lease_too_short")
                return
            breaker = self.breaker(kind.name, target)
            forced = getattr(kind, "forced", None)  # asked for by a person: past the breaker
            if not breaker.allow(clock()) and not (forced is not None and forced(row)):
                until = breaker.retry_at(clock(), self.rand)
                self._hold(kind, row, until, CIRCUIT_OPEN, clock(), report)
                return
            outcome = self._call(kind, row, target, breaker, clock, report)
            if outcome is None:
                return
            report.called += 1
            report.count(kind.name, target, outcome.label)
            if outcome.signal is Signal.TRIP:
                if breaker.trip(clock(), outcome.error):
                    breaker_log.opened(kind.name, target, breaker)
                until = breaker.retry_at(clock(), self.rand)
                self._hold(kind, row, until, outcome.error, clock(), report)
                return
            if outcome.signal is Signal.FAILURE:
                if breaker.record_failure(clock(), outcome.error):
                    breaker_log.opened(kind.name, target, breaker)
            elif breaker.record_success():
                breaker_log.closed(kind.name, target)
            self._store(kind, row, outcome, clock(), report)
        except Exception:
            log.exception("storing a result failed", extra={"kind": kind.name})
            raise
        finally:
            with self._lock:
                self._in_flight[(kind.name, target)] -= 1
                self._busy[kind.name] -= 1

    def _call(
        self,
        kind: AnyKind,
        row: Any,
        target: str,
        breaker: CircuitBreaker,
        clock: Clock,
        report: TickReport,
    ) -> Outcome[Any] | None:
        try:
            return kind.call(row)
        except Exception:  # a bug in a kind's call must not kill the engine
            log.exception("call crashed", extra={"kind": kind.name, "target": target})
            breaker.record_failure(clock(), "the call crashed")
            report.count(kind.name, target, "crashed")
            return None

    def _store(
        self, kind: AnyKind, row: Any, outcome: Outcome[Any], now: datetime, report: TickReport
    ) -> None:
        done = Done(row=row, now=now, outcome=outcome)
        if not self.writer.run(self._completions[kind.name], done):
            report.lost_leases += 1

    def _hold(
        self,
        kind: AnyKind,
        row: Any,
        until: datetime,
        why: str,
        now: datetime,
        report: TickReport,
        *,
        counted: bool = True,
    ) -> None:
        if counted:
            report.held += 1
            report.count(kind.name, kind.target(row) or "-", "held")
        held: Done[Any, Any] = Done(row=row, now=now, hold=Hold(until, why))
        self.writer.run(self._completions[kind.name], held)
