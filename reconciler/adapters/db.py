"""How to reach the database: engines with the right per-dialect settings, and sessions."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

BUSY_TIMEOUT_S = 30


class _QueuedWriterConnection(sqlite3.Connection):
    """A SQLite connection whose transactions queue on a lock shared by its engine.

    SQLite lets one writer in at a time; the others spin in its busy handler, which
    sleeps in growing steps and makes the slowest webhook wait far longer than the
    work takes. Queuing on a Python lock inside the process hands the database over the
    moment the previous transaction ends. Other processes still meet the busy handler.
    """

    write_lock: threading.Lock  # set per engine, see _connection_class
    _holds_lock = False

    def begin_queued(self) -> None:
        # The same bound as SQLite's own busy timeout: a stuck writer is an error, not a hang.
        if not self.write_lock.acquire(timeout=BUSY_TIMEOUT_S):
            raise sqlite3.OperationalError("database is locked (queued writer timed out)")
        self._holds_lock = True
        try:
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


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout, foreign keys and queued writers."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={
                "timeout": BUSY_TIMEOUT_S,
                "check_same_thread": False,
                "factory": _connection_class(),
            },
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        # A burst may borrow a few more; past that, requests wait for a connection.
        max_overflow=max(2, pool_size // 2),
        pool_pre_ping=True,
        future=True,
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
        # Take the write lock up front: a deferred transaction that later writes can fail
        # with SQLITE_BUSY instead of waiting, which would lose a webhook under load.
        conn.connection.dbapi_connection.begin_queued()


READ_ONLY = "reconciler_read_only"


def make_sessionmaker(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """Make sessions; read-only ones skip SQLite's writer queue (they must not write)."""
    bind = engine.execution_options(**{READ_ONLY: True}) if read_only else engine
    return sessionmaker(bind, expire_on_commit=False)
