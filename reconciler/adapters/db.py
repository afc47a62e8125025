"""How to reach the database: engines with the right per-dialect settings, and sessions.

Waiting: the sweep may wait up to `BUSY_TIMEOUT_S` for a lock, but a request must not (a
client would rather get a 503 and retry): inside `request_waits()` a transaction waits at
most `REQUEST_WAIT_S` for SQLite's write lock, a PostgreSQL lock or a statement.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

BUSY_TIMEOUT_S = 30
REQUEST_WAIT_S = 3.0
# A pooled connection is checked with a round trip only after it sat unused this long
# (a server or firewall may have closed it meanwhile); a busy pool never pays for one.
PING_AFTER_IDLE_S = 30.0
# Open connections are replaced after this long, before any server-side idle limit.
RECYCLE_S = 1800
_wait_s: ContextVar[float] = ContextVar("reconciler_db_wait_s", default=BUSY_TIMEOUT_S)


@contextmanager
def request_waits(seconds: float = REQUEST_WAIT_S) -> Iterator[None]:
    """Bound how long transactions begun in this context wait for locks and statements."""
    token = _wait_s.set(seconds)
    try:
        yield
    finally:
        _wait_s.reset(token)


def set_request_wait(seconds: float = REQUEST_WAIT_S) -> Any:
    """Start bounding waits in this thread's context; pass the token to `reset_wait`."""
    return _wait_s.set(seconds)


def reset_wait(token: Any) -> None:
    _wait_s.reset(token)


def current_wait() -> float:
    """How long a transaction begun now in this context may wait for locks."""
    return _wait_s.get()


class DatabaseFileChanged(sqlite3.OperationalError):
    """The SQLite file this process opened was deleted or replaced under it."""


class _QueuedWriterConnection(sqlite3.Connection):
    """A SQLite connection whose transactions queue on a lock shared by its engine.

    SQLite lets one writer in at a time; the others spin in its busy handler, which
    sleeps in growing steps and makes the slowest webhook wait far longer than the
    work takes. Queuing on a Python lock inside the process hands the database over the
    moment the previous transaction ends. Other processes still meet the busy handler.
    """

    write_lock: threading.Lock  # set per engine, see _connection_class
    _holds_lock = False

    _busy_ms = BUSY_TIMEOUT_S * 1000

    def begin_queued(self, wait_s: float) -> None:
        # The same bound as SQLite's own busy timeout: a stuck writer is an error, not a hang.
        if not self.write_lock.acquire(timeout=wait_s):
            raise sqlite3.OperationalError("database is locked (queued writer timed out)")
        self._holds_lock = True
        try:
            busy_ms = int(wait_s * 1000)
            if busy_ms != self._busy_ms:
                self.execute(f"PRAGMA busy_timeout={busy_ms}")
                self._busy_ms = busy_ms
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._release()
            raise

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()

    def _release(self) -> None:
        if self._holds_lock:
            self._holds_lock = False
            self.write_lock.release()


def _connection_class() -> type[_QueuedWriterConnection]:
    return type(
        "QueuedWriterConnection", (_QueuedWriterConnection,), {"write_lock": threading.Lock()}
    )


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases and in-memory ones)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).resolve()


def prepare_sqlite_file(url: str) -> None:
    """Create the database file readable by its owner only (0600), or tighten it.

    It holds raw webhook bodies. SQLite creates the WAL and shared-memory files with the
    database file's permissions, so those follow.
    """
    path = sqlite_path(url)
    if path is None:
        return
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            if name.stat().st_uid == os.getuid() and name.stat().st_mode & 0o077:
                name.chmod(0o600)
        except FileNotFoundError:
            continue


_file_ids: weakref.WeakKeyDictionary[Engine, tuple[Path, tuple[int, int]]] = (
    weakref.WeakKeyDictionary()
)


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def file_problem(engine: Engine) -> str | None:
    """Say what happened to the SQLite file this engine opened, if it was deleted or replaced."""
    known = _file_ids.get(engine)
    if known is None:
        return None
    path, identity = known
    now = _file_id(path)
    if now is None:
        return f"database file {path.name} was deleted"
    if now != identity:
        return f"database file {path.name} was replaced"
    return None


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout, foreign keys and queued writers."""
    if url.startswith("sqlite"):
        prepare_sqlite_file(url)
        engine = create_engine(
            url,
            connect_args={
                "timeout": BUSY_TIMEOUT_S,
                "check_same_thread": False,
                "factory": _connection_class(),
            },
        )
        _configure_sqlite(engine)
        path = sqlite_path(url)
        identity = _file_id(path) if path is not None else None
        if path is not None and identity is not None:
            _file_ids[engine] = (path, identity)
        return engine
    engine = create_engine(
        url,
        pool_size=pool_size,
        # A burst may borrow a few more; past that, requests wait for a connection.
        max_overflow=max(2, pool_size // 2),
        pool_recycle=RECYCLE_S,
        # A server that does not answer at all is an error in seconds, not a hang.
        connect_args={"connect_timeout": 3} if url.startswith("postgresql") else {},
        future=True,
    )
    _ping_when_idle(engine)
    if engine.dialect.name == "postgresql":
        _configure_postgres(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection at check-out only if it sat idle past `PING_AFTER_IDLE_S`.

    `pool_pre_ping` would cost a round trip (on PostgreSQL a commit) on every check-out.
    A connection that dies while in use (a server restart) raises a disconnect error:
    SQLAlchemy then invalidates the whole pool, the request answers 503 with
    `Retry-After` (`entrypoints/dbtrouble.py`) and the sweep retries on its next tick.
    """

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            # The pool discards this connection and checks out a fresh one.
            raise sa_exc.DisconnectionError(f"idle connection closed: {exc}") from exc


def _configure_postgres(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        wait_s = _wait_s.get()
        if wait_s < BUSY_TIMEOUT_S:
            # Inside a request: a lock held elsewhere or a stuck statement is a quick 503.
            ms = int(wait_s * 1000)
            conn.exec_driver_sql(
                f"SELECT set_config('lock_timeout', '{ms}', true),"
                f" set_config('statement_timeout', '{ms * 2}', true)"
            )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            # WAL readers see a snapshot and never wait for the writer.
            conn.exec_driver_sql("BEGIN DEFERRED")
            return
        # A write to a file that was deleted or replaced would be acknowledged and lost.
        problem = file_problem(engine)
        if problem is not None:
            raise DatabaseFileChanged(problem)
        # Take the write lock up front: a deferred transaction that later writes can fail
        # with SQLITE_BUSY instead of waiting, which would lose a webhook under load.
        conn.connection.dbapi_connection.begin_queued(_wait_s.get())


READ_ONLY = "reconciler_read_only"


def make_sessionmaker(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """Make sessions; read-only ones skip SQLite's writer queue (they must not write)."""
    bind = engine.execution_options(**{READ_ONLY: True}) if read_only else engine
    return sessionmaker(bind, expire_on_commit=False)


# What database trouble looks like to a caller: locked, timed out, down, gone.
TROUBLE: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,  # locked, timed out, connection refused or lost
    sa_exc.InterfaceError,  # a connection closed under us
    sa_exc.TimeoutError,  # no pooled connection came free in time
    sqlite3.OperationalError,  # raised inside the begin hook (queued writer, file replaced)
    psycopg.OperationalError,
)


def contended(exc: BaseException) -> bool:
    """Whether PostgreSQL broke a deadlock or a serialization conflict (worth one retry)."""
    cause = getattr(exc, "orig", exc)
    return getattr(cause, "sqlstate", None) in ("40P01", "40001")


def describe(exc: BaseException) -> str:
    """Name the trouble without the driver's full message (it may carry addresses)."""
    original: Any = getattr(exc, "orig", None) or exc
    if isinstance(original, DatabaseFileChanged):
        return str(original)
    text = str(original).lower()
    if "locked" in text or "lock timeout" in text:
        return "locked"
    if "statement timeout" in text or "canceling statement" in text:
        return "timed out"
    return type(original).__name__
