"""Throw-away PostgreSQL servers for the test suite, started from the local binaries.

Nothing has to be running beforehand: :class:`PgServer` runs ``initdb`` into a fresh
temporary directory, starts the server with ``pg_ctl`` on ``127.0.0.1`` and a free
port (durability switched off: ``fsync``, ``synchronous_commit`` and
``full_page_writes`` are off, so it is fast), and removes everything again on
:meth:`PgServer.stop`. Authentication is ``trust``, and only for 127.0.0.1 and the
private Unix socket in the temporary directory.

PostgreSQL refuses to run as root. When the tests run as root (CI does), every
PostgreSQL command goes through ``runuser -u postgres --`` and the temporary
directory, made under ``/tmp`` (or ``$RECONCILER_PG_TMPDIR``) so that the
``postgres`` user can reach it, is handed to that user. As any other user the
commands run directly.

A server is always stopped, even if pytest is interrupted: :meth:`PgServer.stop`
is registered with :mod:`atexit`, SIGTERM is turned into ``KeyboardInterrupt``
(when nobody else handles it) so that pytest's teardown and atexit still run,
and a server whose owning process died without cleaning up (SIGKILL) is stopped
and removed by the next :meth:`PgServer.start` on the machine.

Where the binaries come from: :func:`find_pg_bin` (``$RECONCILER_PG_BIN``, then
``pg_ctl`` on ``PATH``, then ``/usr/lib/postgresql/*/bin``, highest version
first). :func:`postgres_unavailable_reason` says why PostgreSQL tests cannot run
here and how to fix it; :func:`require_postgres` skips the calling test with that
message, or fails it when ``CI=true`` (CI must never silently skip them).

Intended use in ``tests/conftest.py`` (``tests/`` has no ``__init__.py``, so
pytest's default ``prepend`` import mode puts ``tests/`` on ``sys.path`` and this
module imports as ``pgserver``; with a ``tests/__init__.py`` it would be
``tests.pgserver``)::

    import pytest
    from pgserver import PgServer, require_postgres


    @pytest.fixture(scope="session")
    def pg_server():
        require_postgres()  # skip (or fail in CI) with a how-to-install message
        with PgServer() as server:
            yield server


    @pytest.fixture
    def pg_url(pg_server):
        # a fresh, empty database per test
        return pg_server.create_database()

Tests that use these fixtures carry ``@pytest.mark.postgres``. One server per
session is the cheap part (about a second to start); a database per test or per
module keeps tests independent. ``create_database()`` returns an SQLAlchemy URL
``postgresql+psycopg://postgres@127.0.0.1:PORT/NAME``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType

__all__ = [
    "PgServer",
    "PgServerError",
    "find_pg_bin",
    "postgres_unavailable_reason",
    "require_postgres",
]

PG_BIN_ENV = "RECONCILER_PG_BIN"
PG_TMPDIR_ENV = "RECONCILER_PG_TMPDIR"
PG_OS_USER = "postgres"  # the OS user PostgreSQL runs as when we are root
SUPERUSER = "postgres"  # the database superuser created by initdb
DIR_PREFIX = "reconciler-pg-"
OWNER_FILE = "owner.pid"
REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
INSTALL_HINT = (
    "install postgresql-15 (apt-get install postgresql) or set "
    f"{PG_BIN_ENV} to the directory holding pg_ctl, initdb and postgres "
    "(e.g. /usr/lib/postgresql/15/bin)"
)
_DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PgServerError(RuntimeError):
    """The server could not be initialised, started or used; the message has the log tail."""


# --------------------------------------------------------------------------- discovery


def _has_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in REQUIRED_BINARIES)


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin -> numeric version, "9.6" < "15" < "16"
    parts = re.findall(r"\d+", path.parent.name)
    return tuple(int(p) for p in parts) if parts else (-1,)


def find_pg_bin() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None.

    Looks at ``$RECONCILER_PG_BIN`` (a directory, or the path of ``pg_ctl`` itself;
    when it is set, it is the only place looked at, so a wrong value is noticed
    rather than silently bypassed), then ``pg_ctl`` on ``PATH`` (symlinks resolved,
    so ``/usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin/pg_ctl`` works), then
    ``/usr/lib/postgresql/*/bin``, highest version first.
    """
    override = os.environ.get(PG_BIN_ENV, "").strip()
    if override:
        path = Path(override).expanduser()
        if path.is_file():
            path = path.parent
        return path if _has_binaries(path) else None

    on_path = shutil.which("pg_ctl")
    if on_path:
        for candidate in (Path(on_path).resolve().parent, Path(on_path).parent):
            if _has_binaries(candidate):
                return candidate

    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for candidate in debian:
        if _has_binaries(candidate):
            return candidate
    return None


def _running_as_root() -> bool:
    return os.geteuid() == 0


def postgres_unavailable_reason() -> str | None:
    """Why PostgreSQL tests cannot run on this machine (with how to fix it), or None."""
    if find_pg_bin() is None:
        override = os.environ.get(PG_BIN_ENV, "").strip()
        if override:
            return (
                f"PostgreSQL tests need a server, but {PG_BIN_ENV}={override!r} does not "
                f"hold {', '.join(REQUIRED_BINARIES)}: {INSTALL_HINT}"
            )
        return (
            "PostgreSQL tests need a server, and no PostgreSQL server binaries "
            f"({', '.join(REQUIRED_BINARIES)}) were found on PATH or in "
            f"/usr/lib/postgresql/*/bin: {INSTALL_HINT}"
        )
    if _running_as_root():
        if shutil.which("runuser") is None:
            return (
                "PostgreSQL refuses to run as root and `runuser` (util-linux) is missing: "
                "install util-linux or run the tests as a non-root user"
            )
        try:
            pwd.getpwnam(PG_OS_USER)
        except KeyError:
            return (
                f"PostgreSQL refuses to run as root and there is no {PG_OS_USER!r} user to "
                f"run it as: create one (useradd --system {PG_OS_USER}), install the "
                "postgresql package (it creates the user), or run the tests as a non-root user"
            )
    return None


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def require_postgres() -> None:
    """Skip the calling test (fail it when ``CI=true``) if PostgreSQL cannot run here."""
    import pytest

    reason = postgres_unavailable_reason()
    if reason is None:
        return
    if _in_ci():
        pytest.fail(f"CI=true, so PostgreSQL tests must run: {reason}", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------- helpers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie (containers often lack a reaper)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    match = re.search(r"^State:\s+(\S)", status, re.MULTILINE)
    return not (match and match.group(1) in {"Z", "X"})


def _is_postmaster_of(pid: int, data_dir: Path) -> bool:
    """True if ``pid`` is a live postgres serving ``data_dir`` (guards against pid reuse)."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(data_dir).encode() in cmdline


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        first = (data_dir / "postmaster.pid").read_text().splitlines()[0]
        return int(first.strip())
    except (OSError, IndexError, ValueError):
        return None


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:]) or "(server log is empty)"


def _clean_env() -> dict[str, str]:
    # PG* variables (PGDATA, PGPORT, PGHOST, ...) from the caller's shell must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


# --------------------------------------------------------------------------- cleanup

_live: set[PgServer] = set()
_live_lock = threading.Lock()
_hooks_installed = False


def _stop_all() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_stop_all)
    # SIGTERM kills Python without running atexit; turn it into KeyboardInterrupt
    # so pytest tears fixtures down and atexit runs. Only if nobody else handles it.
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)


# --------------------------------------------------------------------------- the server


class PgServer:
    """A private PostgreSQL server in a temporary directory.

    ``PgServer().start()`` (or ``with PgServer() as server:``) initialises and
    starts it; :attr:`url` is the SQLAlchemy URL of its ``postgres`` database;
    :meth:`create_database` makes a fresh database and returns its URL;
    :meth:`stop` (idempotent) kills it (``pg_ctl stop -m immediate``) and deletes
    the directory.
    """

    host = "127.0.0.1"
    user = SUPERUSER

    def __init__(
        self,
        bin_dir: Path | str | None = None,
        *,
        extra_options: dict[str, str] | None = None,
        start_timeout_s: int = 60,
    ) -> None:
        self._bin_dir = Path(bin_dir) if bin_dir is not None else None
        self.extra_options = dict(extra_options or {})
        self.start_timeout_s = start_timeout_s
        self.port: int | None = None
        self.base_dir: Path | None = None
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None
        self._lock = threading.Lock()
        self._as_postgres = _running_as_root()

    # ---- paths and URLs

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            found = find_pg_bin()
            if found is None:
                raise PgServerError(postgres_unavailable_reason() or INSTALL_HINT)
            self._bin_dir = found
        return self._bin_dir

    @property
    def data_dir(self) -> Path:
        return self._require_base() / "data"

    @property
    def log_path(self) -> Path:
        return self._require_base() / "server.log"

    @property
    def running(self) -> bool:
        return self.base_dir is not None and self.port is not None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the server's ``postgres`` database."""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        if not self.running:
            raise PgServerError("the PostgreSQL server is not running (call start() first)")
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq connection string, for psycopg.connect()."""
        if not self.running:
            raise PgServerError("the PostgreSQL server is not running (call start() first)")
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def _require_base(self) -> Path:
        if self.base_dir is None:
            raise PgServerError("the PostgreSQL server is not running (call start() first)")
        return self.base_dir

    # ---- running commands

    def _command(self, name: str, *args: str) -> list[str]:
        cmd = [str(self.bin_dir / name), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", PG_OS_USER, "--", *cmd]
        return cmd

    def _run(self, name: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._command(name, *args),
            cwd=self.base_dir,  # a directory the postgres user can enter
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # ---- lifecycle

    def __enter__(self) -> PgServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> PgServer:
        """initdb + pg_ctl start; returns self. Raises PgServerError with the log tail."""
        with self._lock:
            if self.running:
                return self
            _install_hooks()
            reap_orphans()
            started = time.monotonic()
            self._make_base_dir()
            with _live_lock:
                _live.add(self)
            try:
                self._initdb()
                self._start_postmaster()
            except BaseException:
                self._stop_locked()
                raise
            self.start_seconds = time.monotonic() - started
            return self

    def _make_base_dir(self) -> None:
        if self._as_postgres:
            parent = os.environ.get(PG_TMPDIR_ENV) or "/tmp"
        else:
            parent = os.environ.get(PG_TMPDIR_ENV) or tempfile.gettempdir()
        base = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=parent))
        (base / OWNER_FILE).write_text(f"{os.getpid()}\n")
        if self._as_postgres:
            pw = pwd.getpwnam(PG_OS_USER)
            os.chown(base, pw.pw_uid, pw.pw_gid)
        self.base_dir = base

    def _initdb(self) -> None:
        base = self._require_base()
        result = self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            timeout=180,
        )
        if result.returncode != 0:
            raise PgServerError(
                f"initdb failed (exit {result.returncode}) in {base}:\n"
                f"{(result.stdout + result.stderr).strip()[-4000:]}"
            )
        # trust, but only over the private socket directory and 127.0.0.1
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            "# written by tests/pgserver.py\n"
            "local all all trust\n"
            "host  all all 127.0.0.1/32 trust\n"
        )
        if self._as_postgres:
            pw = pwd.getpwnam(PG_OS_USER)
            os.chown(hba, pw.pw_uid, pw.pw_gid)

    def _options(self, port: int) -> str:
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(port),
            "unix_socket_directories": str(self._require_base()),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "128MB",
            **self.extra_options,
        }
        return " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in options.items())

    def _start_postmaster(self) -> None:
        # The free port can be taken between probing and binding: retry on a new one.
        for attempt in range(5):
            port = _free_port()
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            result = self._run(
                "pg_ctl",
                "start",
                "-w",
                "-t",
                str(self.start_timeout_s),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-o",
                self._options(port),
                timeout=self.start_timeout_s + 30,
            )
            if result.returncode == 0:
                self.port = port
                return
            log = _tail(self.log_path)
            with contextlib.suppress(OSError):
                log = self.log_path.read_text(errors="replace")[log_offset:][-4000:] or log
            self._kill_postmaster()
            port_taken = "could not bind" in log or "Address already in use" in log
            if port_taken and attempt < 4:
                continue
            raise PgServerError(
                f"PostgreSQL failed to start (pg_ctl exit {result.returncode}) "
                f"from {self.bin_dir} in {self.base_dir}\n"
                f"pg_ctl: {(result.stdout + result.stderr).strip()[-2000:]}\n"
                f"--- server log (tail) ---\n{log.strip()}"
            )

    def stop(self) -> None:
        """Stop the server (immediate mode) and delete its directory; safe to call twice."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        base = self.base_dir
        if base is None:
            return
        started = time.monotonic()
        try:
            self._kill_postmaster()
        finally:
            shutil.rmtree(base, ignore_errors=True)
            self.base_dir = None
            self.port = None
            with _live_lock:
                _live.discard(self)
            self.stop_seconds = time.monotonic() - started

    def _kill_postmaster(self) -> None:
        data_dir = self.data_dir
        pid = _postmaster_pid(data_dir)
        if pid is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self._run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(data_dir), timeout=30)
        _ensure_dead(pid, data_dir)

    # ---- databases

    def create_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """Create a database (a unique name if none given); returns its SQLAlchemy URL.

        ``template`` copies an existing database (``CREATE DATABASE … TEMPLATE``), e.g.
        one migrated once per session, which is much faster than migrating again;
        nobody may be connected to the template while it is copied.
        """
        import psycopg
        from psycopg import sql

        if name is None:
            name = f"test_{uuid.uuid4().hex[:12]}"
        for value in (name, template):
            if value is not None and not _DB_NAME_RE.match(value):
                raise ValueError(f"invalid database name {value!r} (lower-case, digits, _)")
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        with psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(query)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still connected to it."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def __repr__(self) -> str:
        state = f"port={self.port}" if self.running else "stopped"
        return f"<PgServer {state} base_dir={self.base_dir}>"


def _ensure_dead(pid: int, data_dir: Path, timeout_s: float = 10.0) -> None:
    """Wait for the postmaster to go; SIGQUIT, then SIGKILL if pg_ctl did not manage."""
    deadline = time.monotonic() + timeout_s
    for sig in (None, signal.SIGQUIT, signal.SIGKILL):
        if sig is not None and _is_postmaster_of(pid, data_dir):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        while time.monotonic() < deadline:
            if not _is_postmaster_of(pid, data_dir):
                return
            time.sleep(0.02)
        deadline = time.monotonic() + timeout_s


def reap_orphans() -> list[Path]:
    """Stop and delete servers left behind by test processes that died (e.g. SIGKILL).

    Only directories made by this module (prefix ``reconciler-pg-`` with an owner
    pid file) whose owner process is gone are touched. Returns the removed paths.
    """
    removed: list[Path] = []
    parents = {os.environ.get(PG_TMPDIR_ENV) or "/tmp", tempfile.gettempdir()}
    for parent in parents:
        for base in Path(parent).glob(f"{DIR_PREFIX}*"):
            try:
                owner = int((base / OWNER_FILE).read_text().strip())
            except (OSError, ValueError):
                continue
            if owner == os.getpid() or _pid_alive(owner):
                continue
            data_dir = base / "data"
            pid = _postmaster_pid(data_dir)
            if pid is not None and _is_postmaster_of(pid, data_dir):
                try:
                    os.kill(pid, signal.SIGQUIT)
                except PermissionError:
                    continue  # someone else's server: not ours to stop
                except ProcessLookupError:
                    pass
                _ensure_dead(pid, data_dir, timeout_s=5.0)
            shutil.rmtree(base, ignore_errors=True)
            removed.append(base)
    return removed
