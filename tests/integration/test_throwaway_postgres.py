"""The throwaway PostgreSQL of tests/support/postgres.py: side by side, gone afterwards, found."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psycopg
import pytest
from support import postgres
from support.postgres import PostgresServer, require_postgres, throwaway_postgres

TESTS_DIR = Path(__file__).resolve().parents[1]


def accepts_connections(server: PostgresServer) -> bool:
    try:
        with psycopg.connect(server.conninfo(), connect_timeout=5):
            return True
    except psycopg.OperationalError:
        return False


@pytest.mark.postgres
def test_a_second_server_runs_beside_the_session_one_and_is_gone_afterwards(
    pg_server: PostgresServer,
) -> None:
    name = f"side_{uuid.uuid4().hex[:8]}"
    with throwaway_postgres() as second:
        assert second.port != pg_server.port
        pg_server.create_database(name)
        second.create_database(name)  # the same name on another server: no clash
        copy = second.create_database(template=name)
        assert copy.startswith(f"postgresql+psycopg://postgres@127.0.0.1:{second.port}/t_")
    assert not accepts_connections(second)
    assert not second.directory.exists()
    assert accepts_connections(pg_server)


@pytest.mark.postgres
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_to_the_owning_process_still_stops_its_server(signum: int) -> None:
    require_postgres()
    script = textwrap.dedent(
        f"""
        import signal, sys, time
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even if a shell ignored it
        sys.path.insert(0, {str(TESTS_DIR)!r})
        from support.postgres import throwaway_postgres
        with throwaway_postgres() as server:
            print(server.port, server.directory, flush=True)
            time.sleep(120)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        port, directory = child.stdout.readline().split()
        server = PostgresServer(port=int(port), directory=Path(directory))
        assert accepts_connections(server)
        child.send_signal(signum)
        child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.terminate()  # SIGTERM still stops the server; SIGKILL would leave it behind
            child.communicate(timeout=60)
    assert not accepts_connections(server)
    assert not server.directory.exists()


def test_the_highest_installed_version_is_used_when_pg_ctl_is_not_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for version in ("9.6", "15", "16", "17"):
        pg_ctl = tmp_path / version / "bin" / "pg_ctl"
        pg_ctl.parent.mkdir(parents=True)
        pg_ctl.write_text("#!/bin/sh\n")
        pg_ctl.chmod(0o755 if version != "17" else 0o644)  # 17 is not executable
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(postgres, "INSTALLED", tmp_path)
    assert postgres.find_pg_ctl() == tmp_path / "16" / "bin" / "pg_ctl"


@pytest.mark.parametrize(
    ("ci", "outcome"), [("", "skipped"), ("true", "failed")], ids=["locally", "in-ci"]
)
def test_without_binaries_postgres_tests_skip_locally_and_fail_in_ci(
    ci: str, outcome: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres, "INSTALLED", tmp_path)
    monkeypatch.setenv("CI", ci)
    expected = pytest.skip.Exception if outcome == "skipped" else pytest.fail.Exception
    with pytest.raises(expected, match="apt-get install postgresql"):
        require_postgres()
