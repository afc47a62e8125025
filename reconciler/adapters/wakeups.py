"""Tell sweepers when a row becomes due sooner than they planned to look.

A transaction that makes a row due notes the time (`note_due`). When it commits, the
process's own sweeper hears of it at once; on PostgreSQL the same transaction sends a
`NOTIFY reconciler_due` that every replica's listener (`Listener`) receives after the
commit. The sweep then wakes at the earliest due time instead of polling the table on
a fixed tick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

import psycopg
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

CHANNEL = "reconciler_due"
_KEY = "reconciler_due"
_KINDS = "reconciler_due_kinds"
UNKNOWN = ""  # a due time whose kind of work was not said: every kind should look

# Told the earliest due time a commit made, and the kinds of work it made due.
OnDue = Callable[[datetime, frozenset[str]], None]


def note_due(session: Session, at: datetime | None, kind: str = UNKNOWN) -> None:
    """Remember that this transaction makes a row of `kind` due at `at` (told on commit).

    Naming the kind lets a sweeper claim only that kind's rows when it wakes.
    """
    if at is None:
        return
    earliest: datetime | None = session.info.get(_KEY)
    if earliest is None or at < earliest:
        session.info[_KEY] = at
    session.info.setdefault(_KINDS, set()).add(kind)


def install(sessions: sessionmaker[Session]) -> None:
    """Announce each committed due time: to this process's subscribers, and by NOTIFY."""
    subscribers: list[OnDue] = []
    _SUBSCRIBERS[id(sessions)] = subscribers

    @event.listens_for(sessions, "before_commit")
    def _notify(session: Session) -> None:
        at: datetime | None = session.info.get(_KEY)
        if at is not None and session.get_bind().dialect.name == "postgresql":
            kinds = ",".join(sorted(session.info.get(_KINDS, ())))
            session.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": CHANNEL, "payload": f"{at.isoformat()} {kinds}".rstrip()},
            )

    @event.listens_for(sessions, "after_commit")
    def _announce(session: Session) -> None:
        at: datetime | None = session.info.pop(_KEY, None)
        kinds = frozenset(session.info.pop(_KINDS, ()) or (UNKNOWN,))
        if at is not None:
            for on_due in list(subscribers):
                on_due(at, kinds)

    @event.listens_for(sessions, "after_rollback")
    def _forget(session: Session) -> None:
        session.info.pop(_KEY, None)
        session.info.pop(_KINDS, None)


def subscribe(sessions: sessionmaker[Session], on_due: OnDue) -> None:
    """Call `on_due` with each due time committed through `sessions` in this process."""
    if id(sessions) not in _SUBSCRIBERS:
        install(sessions)
    _SUBSCRIBERS[id(sessions)].append(on_due)


_SUBSCRIBERS: dict[int, list[OnDue]] = {}


class Listener:
    """Receive other replicas' due times on PostgreSQL (LISTEN on its own connection)."""

    def __init__(self, database_url: str, on_due: OnDue) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self.dsn = url.render_as_string(hide_password=False)
        self.on_due = on_due
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="due-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._heard(note.payload)
            except psycopg.Error as exc:
                # The database went away: the sweep's idle check still finds due rows.
                log.warning("due listener lost its connection", extra={"error": str(exc)})
                self._stop.wait(5)

    def _heard(self, payload: str) -> None:
        stamp, _, named = payload.partition(" ")
        try:
            at = datetime.fromisoformat(stamp)
        except ValueError:
            return
        if at.tzinfo is not None:
            self.on_due(at, frozenset(named.split(",")) if named else frozenset((UNKNOWN,)))
