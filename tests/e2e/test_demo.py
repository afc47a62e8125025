"""`reconciler demo` as a user runs it: two real processes, faults, a scored report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(90)


def test_demo_settles_every_payment_correctly_under_faults(tmp_path: Path) -> None:
    plot = tmp_path / "demo.png"
    argv = [
        *(sys.executable, "-m", "reconciler.entrypoints.cli", "demo"),
        *("--payments", "40", "--seed", "3", "--settle-max", "5"),
        *("--outage-at", "2", "--outage", "3", "--timeout", "40"),
        *("--json", "--plot", str(plot)),
    ]
    # Bytes, not text: text mode would turn a stray \r into a newline and hide it.
    run = subprocess.run(argv, capture_output=True, timeout=80, check=False)
    stdout, stderr = run.stdout.decode(), run.stderr.decode()
    assert run.returncode == 0, stdout + stderr

    text, _, raw = stdout.partition("\n{")
    report = json.loads("{" + raw)
    assert report["payments"] == 40
    assert report["converged"] == 40
    assert report["wrong"] == 0
    assert report["webhooks"]["applied_twice"] == 0
    # Every lost terminal webhook was filled in by polling, and at least one was lost.
    assert report["polls_per_payment"]["webhook_lost"]["n"] > 0
    assert report["staleness_s"]["all"]["p99"] is not None
    assert report["outage"]["duration_s"] == 3.0
    assert "0 wrong" in text
    assert "verdict         OK" in text
    assert "policy          first poll after 2 s, then 1 s x2 up to 8 s, give up after 1 h" in text
    # Not on a terminal, the progress went to stderr as plain lines, none redrawn with \r.
    assert f"\n[{'#' * 30}] 40/40 settled" in stderr
    assert "\r" not in stderr
    assert plot.stat().st_size > 10_000


def test_demo_refuses_an_empty_population() -> None:
    argv = [sys.executable, "-m", "reconciler.entrypoints.cli", "demo", "--payments", "0"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert run.returncode == 2
    assert "--payments" in run.stderr
