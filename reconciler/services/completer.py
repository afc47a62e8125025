"""Group commit for the engine: the results of many calls stored in one transaction.

A worker whose call has ended hands its row to `Completer.complete` and waits. The first
waiter to find nobody writing becomes the writer: it takes every row queued so far and
stores them in one transaction, grouped by kind (one `BatchKind.complete` per kind),
while the others wait for it; then the next waiter takes what queued meanwhile. So a
quiet engine commits each result at once, and a busy one commits a tick's results
together: fewer commits, and on SQLite one writer instead of many queueing for its lock.

A batch that fails is stored again row by row, so one bad row costs only its own result.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from reconciler.services.work import BatchKind, Done

log = logging.getLogger(__name__)

MAX_BATCH = 128  # rows per transaction at most


@dataclass
class _Pending:
    kind: BatchKind[Any, Any]
    done: Done[Any, Any]
    stored: bool | None = None
    error: BaseException | None = None
    lead: bool = False  # woken to write the queue, not because its row was written
    woken: threading.Event = field(default_factory=threading.Event)


class Completer:
    """Store ended rows for one engine, many per transaction (leader-follower group commit)."""

    def __init__(self, sessions: sessionmaker[Session], owner: str) -> None:
        self.sessions = sessions
        self.owner = owner
        self._queue: list[_Pending] = []
        self._writing = False
        self._lock = threading.Lock()
        self.transactions = 0  # for tests and benchmarks: commits made
        self.rows = 0  # rows stored (or found lost) in them

    def complete(self, kind: BatchKind[Any, Any], done: Done[Any, Any]) -> bool:
        """Store one ended row (in some batch); say whether its lease was still held."""
        pending = _Pending(kind, done)
        with self._lock:
            self._queue.append(pending)
            lead = not self._writing
            self._writing = True
        if not lead:
            pending.woken.wait()
        if not pending.woken.is_set() or pending.lead:
            self._lead()
        if pending.error is not None:
            raise pending.error
        return bool(pending.stored)

    def _lead(self) -> None:
        """Write what is queued as one batch, then hand the writing on (or stop)."""
        with self._lock:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        self._store(batch)
        for pending in batch:
            pending.woken.set()
        with self._lock:
            if self._queue:
                heir = self._queue[0]
                heir.lead = True
                heir.woken.set()  # it writes the next batch, its own row in it
            else:
                self._writing = False

    def _store(self, batch: Sequence[_Pending]) -> None:
        try:
            self._write(batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            log.warning("a batch of results failed; storing them one by one", exc_info=True)
            for pending in batch:
                self._store([pending])

    def _write(self, batch: Sequence[_Pending]) -> None:
        by_kind: dict[str, list[_Pending]] = {}
        for pending in batch:
            by_kind.setdefault(pending.kind.name, []).append(pending)
        results: list[tuple[_Pending, bool]] = []
        with self.sessions.begin() as session:
            for group in by_kind.values():
                kept = group[0].kind.complete(session, [p.done for p in group], self.owner)
                results.extend(zip(group, kept, strict=True))
        self.transactions += 1
        self.rows += len(batch)
        for pending, stored in results:
            pending.stored = stored
