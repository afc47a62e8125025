"""Start a throwaway PostgreSQL server from the local binaries with pytest-postgresql.

pytest-postgresql's executor runs ``initdb`` and ``pg_ctl``; this module only chooses where:
a fresh directory under the system temp dir, 127.0.0.1 on a free port, the socket in that
directory, durability off. PostgreSQL refuses to run as root, so as root ``pg_ctl`` is a
generated wrapper that re-runs itself as the ``postgres`` user (``runuser``), and the data
directory belongs to that user. The plugin's own ``postgresql_proc`` fixture is not used:
it keeps the data in pytest's ``basetemp``, which only root can enter, and the benchmarks
need the server outside pytest. The server stops and its directory goes when the block
ends, also on Ctrl-C and on SIGTERM (turned into ``KeyboardInterrupt`` while it runs).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_postgresql.executors import PostgreSQLExecutor

PG_OS_USER = "postgres"  # the OS user the server runs as when the tests run as root
SUPERUSER = "postgres"  # the database superuser made by initdb
HOST = "127.0.0.1"
INSTALLED = Path("/usr/lib/postgresql")  # Debian and Ubuntu: <version>/bin/pg_ctl
SERVER_OPTIONS = {
    "listen_addresses": HOST,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}
INSTALL_HINT = (
    "install the PostgreSQL server (apt-get install postgresql) or put its pg_ctl on PATH"
)


def find_pg_ctl() -> Path | None:
    """Return ``pg_ctl`` from PATH, else from ``/usr/lib/postgresql/*/bin`` (highest version)."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path)
    installed = sorted(
        INSTALLED.glob("*/bin/pg_ctl"),
        key=lambda path: [int(part) for part in re.findall(r"\d+", path.parent.parent.name)],
        reverse=True,
    )
    return next((path for path in installed if os.access(path, os.X_OK)), None)


def unavailable_reason() -> str | None:
    """Say why no PostgreSQL server can start here, and how to fix it; None if one can."""
    if find_pg_ctl() is None:
        return f"no pg_ctl on PATH or in /usr/lib/postgresql/*/bin: {INSTALL_HINT}"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "PostgreSQL refuses root and runuser (util-linux) is missing: install it"
        try:
            pwd.getpwnam(PG_OS_USER)
        except KeyError:
            return f"PostgreSQL refuses root and there is no {PG_OS_USER!r} user: {INSTALL_HINT}"
    return None


def require_postgres() -> None:
    """Skip the calling test when PostgreSQL cannot run here; fail it instead when CI=true."""
    import pytest

    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"CI=true, so PostgreSQL tests must run: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


@dataclass(frozen=True)
class PostgresServer:
    """A running server: SQLAlchemy URLs and libpq strings for its databases."""

    port: int
    directory: Path  # removed with everything in it when the server stops
    host: str = HOST
    user: str = SUPERUSER

    def url_for(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def create_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """Create a database (fresh name unless given), maybe from a template; return its URL."""
        import psycopg
        from psycopg import sql

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(query)
        return self.url_for(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _run_as_postgres(base: Path, pg_ctl: Path) -> tuple[Path, Path]:
    """Give ``base/run`` to the postgres user; return it and a root-owned wrapper around pg_ctl."""
    account = pwd.getpwnam(PG_OS_USER)
    run_dir = base / "run"
    run_dir.mkdir()
    os.chown(run_dir, account.pw_uid, account.pw_gid)
    base.chmod(0o755)
    wrapper = base / "pg_ctl"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"cd {shlex.quote(str(run_dir))} || exit 1\n"
        f'exec runuser -u {PG_OS_USER} -- {shlex.quote(str(pg_ctl))} "$@"\n'
    )
    wrapper.chmod(0o755)
    return run_dir, wrapper


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so the server is stopped on the way out."""
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start(
    executable: Path, base: Path, run_dir: Path
) -> tuple[PostgresServer, PostgreSQLExecutor]:
    """Start a server on a free port; try another port if that one was taken meanwhile."""
    from pytest_postgresql.executors import PostgreSQLExecutor

    log = run_dir / "server.log"
    error: Exception | None = None
    for _attempt in range(3):
        server = PostgresServer(port=_free_port(), directory=base)
        executor = PostgreSQLExecutor(
            executable=str(executable),
            host=server.host,
            port=server.port,
            datadir=str(run_dir / "data"),
            unixsocketdir=str(run_dir),
            logfile=str(log),
            startparams="-w",
            dbname="postgres",
            user=server.user,
            postgres_options=" ".join(f"-c {k}={v}" for k, v in SERVER_OPTIONS.items()),
        )
        try:
            executor.start()
            # pg_ctl -w exits 0 once *this* server accepts connections; the port answering
            # is not enough (another session's server may have taken it first).
            if executor.process is not None and executor.process.wait(timeout=60) == 0:
                return server, executor
        except Exception as failure:
            error = failure
        with contextlib.suppress(Exception):
            executor.stop()
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no server log)"
    raise RuntimeError(f"PostgreSQL did not start from {executable} ({error}):\n{tail}") from error


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[PostgresServer]:
    """Run a fresh server for the duration of the block; remove all of it afterwards."""
    pg_ctl = find_pg_ctl()
    reason = unavailable_reason()
    if pg_ctl is None or reason is not None:
        raise RuntimeError(reason or INSTALL_HINT)
    base = Path(tempfile.mkdtemp(prefix="reconciler-pg-"))
    with _sigterm_interrupts():
        try:
            run_dir, executable = (
                _run_as_postgres(base, pg_ctl) if os.geteuid() == 0 else (base, pg_ctl)
            )
            server, executor = _start(executable, base, run_dir)
            try:
                yield server
            finally:
                executor.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)
