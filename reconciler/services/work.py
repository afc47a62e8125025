"""What a kind of work is to the engine: the kind protocols and the values they trade.

A kind names its queue and brings small pieces: read a claimed row, name its target
(the breaker's key), make the call, store what ended. `BatchKind` returns one `Outcome`
per call and stores a batch of `Done` rows at once (the engine's completer commits many
together); `Kind` is the row-by-row form (merchant deliveries).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Row
from sqlalchemy.orm import Session

from reconciler.adapters.repository import Queue

RowT = TypeVar("RowT")
ResultT = TypeVar("ResultT")


class Signal(Enum):
    """What a call's result tells the target's breaker."""

    SUCCESS = "success"  # the target answered
    FAILURE = "failure"  # the target failed transiently: counts toward opening
    TRIP = "trip"  # our configuration is wrong (credentials): open at once, hold the row


@dataclass(frozen=True)
class Outcome(Generic[ResultT]):
    """What a call came to: the kind's result, what it tells the breaker, a label, words."""

    result: ResultT
    signal: Signal
    label: str  # for counters (`ok`, `transient`, …)
    error: str = ""  # what went wrong, in words fit for the row's owner ("" on success)


@dataclass(frozen=True)
class Hold:
    """No call was made: the row comes back at `until` (breaker open, target busy, …)."""

    until: datetime
    why: str


@dataclass(frozen=True)
class Done(Generic[RowT, ResultT]):
    """One leased row's end for this tick: a call's outcome, or a hold; stored in a batch."""

    row: RowT
    now: datetime
    outcome: Outcome[ResultT] | None = None
    hold: Hold | None = None


class BatchKind(Protocol[RowT, ResultT]):
    """A kind of work whose results the engine stores in batches (payment polls).

    `call` returns one `Outcome`; `complete` decides and stores a batch of ended rows in
    the engine's transaction, each only while `owner` still holds its lease, and says
    which it stored (the rest lost their lease: another sweeper has them).
    """

    name: str
    queue: Queue
    concurrency: int
    max_in_flight_per_target: int | None

    def row(self, claimed: Row[Any]) -> RowT: ...

    def row_id(self, row: RowT) -> str: ...

    def target(self, row: RowT) -> str | None: ...

    def call(self, row: RowT) -> Outcome[ResultT]: ...

    def complete(
        self, session: Session, done: Sequence[Done[RowT, ResultT]], owner: str
    ) -> list[bool]: ...


class Kind(Protocol[RowT, ResultT]):
    """One kind of work the engine drives row by row (merchant deliveries)."""

    name: str
    queue: Queue
    concurrency: int  # calls of this kind in flight at once, across its targets
    max_in_flight_per_target: int | None  # None: only `concurrency` bounds a target
    # A kind may also set `max_call_s`, the longest its call can take, when that is not
    # the engine's `EngineConfig.max_call_s` (a call is made only if it fits in the lease).

    def row(self, claimed: Row[Any]) -> RowT:
        """Read one claimed row (the queue's returned columns)."""
        ...

    def row_id(self, row: RowT) -> str:
        """Name the row."""
        ...

    def target(self, row: RowT) -> str | None:
        """Name whom the row calls (the breaker's key); None when it cannot be called."""
        ...

    def call(self, row: RowT) -> ResultT:
        """Make the third-party call; never raises (failures are results)."""
        ...

    def signal(self, result: ResultT) -> Signal:
        """Say what the result means for the target's breaker."""
        ...

    def label(self, result: ResultT) -> str:
        """Name the result for counters (`ok`, `transient`, …)."""
        ...

    def describe(self, result: ResultT) -> str:
        """Say what went wrong, in words fit for the row's owner to read."""
        ...

    def store(self, session: Session, row: RowT, result: ResultT, now: datetime) -> None:
        """Decide and store the row's next state (the engine holds the lease)."""
        ...

    def hold(self, session: Session, row: RowT, until: datetime, why: str, now: datetime) -> None:
        """Push the row back to `until` without a call (not an attempt)."""
        ...

    def lost(self, session: Session, row: RowT, result: ResultT, now: datetime) -> None:
        """Note a result that came back after the row's lease was taken by another."""
        ...
