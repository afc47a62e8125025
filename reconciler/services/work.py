"""What a kind of work is to the engine: the kind protocol and the values it trades.

A kind names its queue and brings small pieces: read a claimed row, name its target
(the breaker's key), make the call, store what ended. A `Kind` returns one `Outcome`
per call and stores a batch of `Done` rows at once (the engine's completer commits many
together); both kinds (payment polls, merchant deliveries) take this form.
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

# The kinds' names: a due time announced with its kind wakes only that kind's claim.
POLLS = "poll"
DELIVERIES = "delivery"

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


class Kind(Protocol[RowT, ResultT]):
    """A kind of work: one `Outcome` per call, results stored in batches.

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
