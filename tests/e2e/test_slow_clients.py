"""Slow clients cannot starve `reconciler serve`: a smaller run of bench/slow_clients.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


def test_healthz_and_webhooks_are_answered_while_slow_sockets_hold_connections() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.slow_clients",
            "--slow-headers=40",
            "--slow-bodies=8",
            "--duration=8",
            "--client-timeout=3",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["service_alive"]
    for probe in ("healthz", "webhook"):
        row = result[probe]
        assert row["probes"] > 0 and row["failed"] == [], (probe, row)
        # Answered while the first slow sockets were still holding their connections.
        assert row["answered_before_first_cut"] > 0, (probe, row)
    # Every slow socket of the first wave was cut by the server's read deadline.
    assert result["slow_sockets_cut"] >= 48, result
