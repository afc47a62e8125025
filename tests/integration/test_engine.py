"""The engine with a fake kind: claims, batched completion, breakers, leases.

The kind is a test double for the *work* (its call returns scripted outcomes); the
engine, its completer and the database are the real ones (SQLite and PostgreSQL), with
payments registered through the API as rows to drive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Row, select
from sqlalchemy.orm import Session
from support.app import MerchantAuth, register_payment
from support.clock import FakeClock

from reconciler.adapters import repository
from reconciler.adapters.models import Payment
from reconciler.bootstrap import Context
from reconciler.services.completer import GroupCommit
from reconciler.services.engine import CIRCUIT_OPEN, Engine, EngineConfig
from reconciler.services.work import Done, Outcome, Signal


class FakeKind:
    """Payments as rows; the call answers from a script; completion records and releases."""

    name = "fake"
    queue = repository.PAYMENT_POLLS
    concurrency = 4
    max_in_flight_per_target: int | None = None

    def __init__(self, signal: Signal = Signal.SUCCESS) -> None:
        self.signal = signal
        self.calls: list[str] = []
        self.batches: list[list[Done[str, str]]] = []
        self.hold_in_complete: threading.Event | None = None
        self.entered = threading.Event()
        self.fail_on: str | None = None
        self.lose: set[str] = set()

    def row(self, claimed: Row[Any]) -> str:
        return str(claimed.id)

    def row_id(self, row: str) -> str:
        return row

    def target(self, row: str) -> str | None:
        return "gw"

    def call(self, row: str) -> Outcome[str]:
        self.calls.append(row)
        return Outcome(f"answer {row}", self.signal, self.signal.value, "it failed")

    def complete(self, session: Session, done: Sequence[Done[str, str]], owner: str) -> list[bool]:
        self.entered.set()
        if self.hold_in_complete is not None:
            self.hold_in_complete.wait(10)
        if self.fail_on is not None and any(item.row == self.fail_on for item in done):
            raise RuntimeError("a row that cannot be stored")
        self.batches.append(list(done))
        kept = []
        for item in done:
            released = repository.release_lease(session, self.queue, item.row, owner)
            kept.append(released and item.row not in self.lose)
        return kept


class Batched:
    """The fake kind's completion as a group-commit batch, as the engine wraps a kind."""

    name = "fake"

    def __init__(self, kind: FakeKind) -> None:
        self.kind = kind

    def write(self, session: Session, items: Sequence[Done[str, str]]) -> list[bool]:
        return self.kind.complete(session, items, "engine-test")


def make_engine(ctx: Context, kind: FakeKind, clock: FakeClock, **config: Any) -> Engine:
    return Engine(
        ctx.sessions,
        [kind],
        owner="engine-test",
        config=EngineConfig(**{"lease_s": 60.0, "max_call_s": 5.0, **config}),
        clock=clock,
        rand=lambda: 0.5,
    )


def due_payments(
    client: FlaskClient, merchant: MerchantAuth, clock: FakeClock, count: int
) -> list[str]:
    ids = [register_payment(client, merchant, f"sim_pay_engine_{n}") for n in range(count)]
    clock.advance(3600)
    return ids


def leased(ctx: Context) -> list[str | None]:
    with ctx.read() as session:
        return list(session.scalars(select(Payment.lease_owner)))


def test_every_claimed_row_is_called_once_and_completed_with_its_lease_released(
    ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    ids = due_payments(client, merchant, clock, 6)
    kind = FakeKind()
    engine = make_engine(ctx, kind, clock)
    report = engine.run_once()
    engine.close()
    assert sorted(kind.calls) == sorted(ids)
    assert sorted(item.row for batch in kind.batches for item in batch) == sorted(ids)
    assert all(item.outcome is not None for batch in kind.batches for item in batch)
    assert report.called == 6 and report.lost_leases == 0
    assert leased(ctx) == [None] * 6


def test_rows_ending_together_are_stored_in_one_transaction(ctx: Context) -> None:
    kind = FakeKind()
    kind.hold_in_complete = threading.Event()
    completer = GroupCommit(ctx.sessions)
    now = ctx.clock()
    results: dict[str, bool] = {}

    def end(row: str) -> None:
        results[row] = completer.run(Batched(kind), Done(row=row, now=now))

    first = threading.Thread(target=end, args=("first",))
    first.start()
    assert kind.entered.wait(10)  # the first row's writer is inside its transaction
    others = [threading.Thread(target=end, args=(f"row{n}",)) for n in range(5)]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 10
    while len(completer._queue) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    kind.hold_in_complete.set()
    for thread in [first, *others]:
        thread.join(10)
    # Rows that ended while a commit was running share the next one.
    assert [len(batch) for batch in kind.batches] == [1, 5]
    assert completer.transactions == 2 and completer.writes == 6
    assert set(results) == {"first", "row0", "row1", "row2", "row3", "row4"}


def test_a_row_that_cannot_be_stored_costs_only_its_own_result(ctx: Context) -> None:
    kind = FakeKind()
    kind.hold_in_complete = threading.Event()
    kind.fail_on = "bad"
    completer = GroupCommit(ctx.sessions)
    now = ctx.clock()
    errors: dict[str, BaseException] = {}
    stored: list[str] = []

    def end(row: str) -> None:
        try:
            completer.run(Batched(kind), Done(row=row, now=now))
            stored.append(row)
        except RuntimeError as exc:
            errors[row] = exc

    threads = [threading.Thread(target=end, args=(row,)) for row in ("a", "bad", "b")]
    threads[0].start()
    assert kind.entered.wait(10)
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + 10
    while len(completer._queue) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    kind.hold_in_complete.set()
    for thread in threads:
        thread.join(10)
    assert sorted(stored) == ["a", "b"]
    assert list(errors) == ["bad"]


def test_a_result_whose_lease_was_lost_is_counted_not_stored(
    ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    ids = due_payments(client, merchant, clock, 2)
    kind = FakeKind()
    kind.lose = {ids[0]}
    engine = make_engine(ctx, kind, clock)
    report = engine.run_once()
    engine.close()
    assert report.lost_leases == 1


def test_a_failing_target_opens_its_breaker_and_later_rows_are_held_without_a_call(
    ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    due_payments(client, merchant, clock, 6)
    kind = FakeKind(signal=Signal.FAILURE)
    kind.concurrency = 1  # one call at a time: the breaker sees them in order
    engine = make_engine(ctx, kind, clock, breaker_threshold=3)
    report = engine.run_once()
    engine.close()
    assert len(kind.calls) == 3
    held = [item for batch in kind.batches for item in batch if item.hold is not None]
    assert len(held) == 3 and {item.hold.why for item in held if item.hold} == {CIRCUIT_OPEN}
    assert report.held == 3


def test_a_trip_opens_the_breaker_at_once_and_holds_the_row_with_the_reason(
    ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    due_payments(client, merchant, clock, 2)
    kind = FakeKind(signal=Signal.TRIP)
    kind.concurrency = 1
    engine = make_engine(ctx, kind, clock)
    engine.run_once()
    engine.close()
    assert len(kind.calls) == 1
    whys = sorted(item.hold.why for batch in kind.batches for item in batch if item.hold)
    assert whys == [CIRCUIT_OPEN, "it failed"]


def test_a_call_that_could_outlive_its_lease_is_not_made(
    ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    due_payments(client, merchant, clock, 1)
    kind = FakeKind()
    engine = make_engine(ctx, kind, clock, lease_s=5.0, max_call_s=10.0)
    report = engine.run_once()
    engine.close()
    assert kind.calls == []
    assert sum(n for key, n in report.outcomes.items() if key.endswith("lease_too_short")) == 1


@pytest.mark.parametrize("count", [1, 7])
def test_the_tick_claims_no_more_than_its_free_slots(
    ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock, count: int
) -> None:
    due_payments(client, merchant, clock, count)
    kind = FakeKind()
    engine = make_engine(ctx, kind, clock)
    report, futures = engine.tick()
    for future in futures:
        future.result(10)
    engine.close()
    assert report.claimed == min(count, kind.concurrency)


def test_engines_sharing_one_writer_each_complete_their_own_leases(
    ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    due_payments(client, merchant, clock, 8)
    first, second = FakeKind(), FakeKind()
    first.hold_in_complete = threading.Event()  # the first commit waits: the rest queue
    writer = GroupCommit(ctx.sessions)
    engines = [
        Engine(
            ctx.sessions,
            [kind],
            owner=owner,
            config=EngineConfig(lease_s=60.0, max_call_s=5.0),
            clock=clock,
            rand=lambda: 0.5,
            writer=writer,
        )
        for kind, owner in ((first, "engine-a"), (second, "engine-b"))
    ]
    ticks = [engine.tick() for engine in engines]
    assert first.entered.wait(10)
    deadline = time.monotonic() + 10
    while len(writer._queue) < 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    first.hold_in_complete.set()
    for _, futures in ticks:
        for future in futures:
            future.result(10)
    for engine in engines:
        engine.close()
    assert [report.lost_leases for report, _ in ticks] == [0, 0]
    assert leased(ctx) == [None] * 8
