"""The throw-away PostgreSQL server of tests/pgserver.py: start, databases, stop, no leaks."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

_TESTS_DIR = Path(__file__).resolve().parents[1]
if str(_TESTS_DIR) not in sys.path:  # tests/conftest.py normally puts it there
    sys.path.insert(0, str(_TESTS_DIR))

import pgserver  # noqa: E402
from pgserver import PgServer, PgServerError, require_postgres  # noqa: E402


def _query(url: str, sql: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def _postmaster_pid(server: PgServer) -> int:
    return int((server.data_dir / "postmaster.pid").read_text().splitlines()[0])


@pytest.mark.postgres
def test_starts_creates_two_databases_and_stops_cleanly() -> None:
    require_postgres()
    server = PgServer()
    server.start()
    try:
        base_dir = server.base_dir
        assert base_dir is not None and (base_dir / "data" / "PG_VERSION").is_file()
        pid = _postmaster_pid(server)
        assert server.url.startswith("postgresql+psycopg://postgres@127.0.0.1:")

        first = server.create_database()
        second = server.create_database("second_db")
        assert first != second
        assert second.endswith("/second_db")

        for url in (first, second):
            assert _query(url, "select version()").startswith("PostgreSQL ")
            assert _query(url, "select current_database()") == url.rsplit("/", 1)[1]
        assert _query(server.url, "show fsync") == "off"
        assert _query(server.url, "show max_connections") == "200"
        assert _query(server.url, "show listen_addresses") == "127.0.0.1"

        engine = create_engine(second)
        with engine.begin() as conn:
            conn.execute(text("create table marker (id int)"))
        engine.dispose()  # nobody may be connected to a template
        copy = server.create_database("copy_db", template="second_db")
        assert _query(copy, "select count(*) from marker") == "0"

        server.drop_database("second_db")
        names = _query(server.url, "select string_agg(datname, ',') from pg_database")
        assert "second_db" not in names.split(",")
    finally:
        server.stop()

    assert not base_dir.exists()
    assert not pgserver._pid_alive(pid)
    assert not server.running
    server.stop()  # idempotent
    with pytest.raises(PgServerError):
        _ = server.url


@pytest.mark.postgres
def test_context_manager_and_bad_database_name() -> None:
    require_postgres()
    with PgServer() as server:
        base_dir = server.base_dir
        assert base_dir is not None
        with pytest.raises(ValueError):
            server.create_database("Robert'); DROP TABLE students;--")
    assert not base_dir.exists()


@pytest.mark.postgres
def test_failed_start_raises_with_the_log_tail_and_cleans_up() -> None:
    require_postgres()
    server = PgServer(extra_options={"shared_buffers": "not-a-size"})
    with pytest.raises(PgServerError) as excinfo:
        server.start()
    message = str(excinfo.value)
    assert "server log" in message
    assert "shared_buffers" in message
    assert server.base_dir is None
    assert not server.running


@pytest.mark.postgres
def test_sigterm_to_the_owning_process_still_stops_the_server() -> None:
    require_postgres()
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(_TESTS_DIR)!r})
        import pgserver
        server = pgserver.PgServer().start()
        pid = open(server.data_dir / "postmaster.pid").read().split()[0]
        print(server.base_dir, pid, flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        base_dir, pid = proc.stdout.readline().split()
        assert Path(base_dir).is_dir()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert not Path(base_dir).exists()
    assert not pgserver._pid_alive(int(pid))


@pytest.mark.postgres
def test_orphans_of_a_dead_owner_are_reaped() -> None:
    require_postgres()
    server = PgServer().start()
    try:
        base_dir = server.base_dir
        assert base_dir is not None
        pid = _postmaster_pid(server)
        # pretend the owning process died without cleaning up (SIGKILL)
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        (base_dir / pgserver.OWNER_FILE).write_text(f"{dead.pid}\n")
        assert base_dir in pgserver.reap_orphans()
        assert not base_dir.exists()
        assert not pgserver._pid_alive(pid)
    finally:
        server.stop()


def test_find_pg_bin_respects_the_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pgserver.PG_BIN_ENV, str(tmp_path))
    assert pgserver.find_pg_bin() is None
    reason = pgserver.postgres_unavailable_reason()
    assert reason is not None
    assert pgserver.PG_BIN_ENV in reason and "apt-get install postgresql" in reason

    for name in pgserver.REQUIRED_BINARIES:
        binary = tmp_path / name
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    assert pgserver.find_pg_bin() == tmp_path
    monkeypatch.setenv(pgserver.PG_BIN_ENV, str(tmp_path / "pg_ctl"))
    assert pgserver.find_pg_bin() == tmp_path


def test_require_postgres_skips_outside_ci_and_fails_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(pgserver.PG_BIN_ENV, str(tmp_path))  # nothing there
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        require_postgres()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_postgres()


def test_versions_sort_highest_first() -> None:
    paths = [Path(f"/usr/lib/postgresql/{v}/bin") for v in ("9.6", "15", "13", "16")]
    ordered = sorted(paths, key=pgserver._version_key, reverse=True)
    assert [p.parent.name for p in ordered] == ["16", "15", "13", "9.6"]
