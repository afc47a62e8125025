"""Group commit: the writes of many threads stored in one transaction.

A thread with something to store (the engine's ended rows, a webhook on SQLite) hands
it to `GroupCommit.run` and waits. The first to find nobody writing becomes the writer:
it takes everything queued so far and stores it in one transaction, grouped by `Batch`
(one `Batch.write` per group: the poll kind's completion is one UPDATE for its rows),
while the others wait; then it hands the writing to the next waiter, if any. A quiet
service commits each write at once; a busy one commits many together: fewer commits,
and on SQLite one writer instead of many queueing for its lock.

Nobody is answered before the commit that holds their write. A batch that fails is
stored again one write at a time, so one bad write costs only its own caller; a batch
that fails because the database is in trouble (locked, gone) fails every caller at once
rather than making each wait again. The batch waits for the database no longer than the
most impatient of its callers would (a request's few seconds, not the sweep's minute).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from reconciler.adapters import db

log = logging.getLogger(__name__)

MAX_BATCH = 128  # writes per transaction at most

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
ItemIn = TypeVar("ItemIn", contravariant=True)
ResultOut = TypeVar("ResultOut", covariant=True)


class Batch(Protocol[ItemIn, ResultOut]):
    """A kind of write that can store many items in the caller's transaction.

    Writes are grouped by `name`: a group is stored by its first item's batch, so two
    batches that differ in anything besides their items need two names.
    """

    name: str

    def write(self, session: Session, items: Sequence[ItemIn]) -> Sequence[ResultOut]:
        """Store the items; return one result per item, in order."""
        ...


@dataclass
class _Pending(Generic[ItemT, ResultT]):
    batch: Batch[ItemT, ResultT]
    item: ItemT
    wait_s: float
    result: Any = None
    error: BaseException | None = None
    lead: bool = False  # woken to write the queue, not because its write was stored
    done: bool = False
    # Held until the caller may go on: a bare lock is the cheapest wake-up there is.
    gate: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.gate.acquire()

    def wake(self) -> None:
        if not self.done:
            self.done = True
            self.gate.release()


class GroupCommit:
    """Store writes from many threads, many per transaction (leader-follower)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._queue: list[_Pending[Any, Any]] = []
        self._writing = False
        self._lock = threading.Lock()
        self.transactions = 0  # for tests and benchmarks: commits made
        self.writes = 0  # writes stored (or refused) in them

    def run(self, batch: Batch[ItemT, ResultT], item: ItemT) -> ResultT:
        """Store one write in some transaction; return its result once that has committed."""
        pending: _Pending[ItemT, ResultT] = _Pending(batch, item, db.current_wait())
        with self._lock:
            self._queue.append(pending)
            lead = not self._writing
            self._writing = True
        if not lead:
            pending.gate.acquire()  # released by the writer of its batch, or to lead
        if lead or pending.lead:
            self._lead()
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[no-any-return]

    def _lead(self) -> None:
        """Write what is queued as one transaction, then hand the writing on (or stop)."""
        with self._lock:
            taken, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        token = db.set_request_wait(min(pending.wait_s for pending in taken))
        try:
            self._store(taken)
        finally:
            db.reset_wait(token)
            for pending in taken:
                pending.wake()
            with self._lock:
                if self._queue:
                    heir = self._queue[0]
                    heir.lead = True
                    heir.wake()  # it writes the next batch, its own write in it
                else:
                    self._writing = False

    def _store(self, taken: Sequence[_Pending[Any, Any]]) -> None:
        try:
            self._write(taken)
        except db.TROUBLE as exc:
            if len(taken) > 1 and db.contended(exc):
                for pending in taken:  # a deadlock across batches: each on its own
                    self._store([pending])
                return
            for pending in taken:
                pending.error = exc
        except Exception as exc:
            if len(taken) == 1:
                taken[0].error = exc
                return
            log.warning("a batch of writes failed; storing them one by one", exc_info=True)
            for pending in taken:
                self._store([pending])

    def _write(self, taken: Sequence[_Pending[Any, Any]]) -> None:
        groups: dict[str, list[_Pending[Any, Any]]] = {}
        for pending in taken:
            groups.setdefault(pending.batch.name, []).append(pending)
        results: list[tuple[_Pending[Any, Any], Any]] = []
        with self.sessions.begin() as session:
            for group in groups.values():
                written = group[0].batch.write(session, [pending.item for pending in group])
                results.extend(zip(group, written, strict=True))
        self.transactions += 1
        self.writes += len(taken)
        for pending, result in results:
            pending.result = result
