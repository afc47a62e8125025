"""Two `make run`s in one directory: the second stops at once instead of sharing the database."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from e2e.conftest import free_port
from e2e.test_make_run import DEVRUN, devrun_env, make_run

pytestmark = pytest.mark.slow


def test_a_second_make_run_on_the_same_database_stops_in_one_line(tmp_path: Path) -> None:
    with make_run(tmp_path, free_port(), free_port(), free_port()):
        second = subprocess.run(
            DEVRUN,
            cwd=tmp_path,
            env=devrun_env(free_port(), free_port(), free_port()),
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert second.returncode == 1
    [line] = second.stderr.strip().splitlines()
    assert line.startswith("make run: another make run is using the database sqlite:///")
    assert "set RECONCILER_DATABASE_URL" in line
