"""`reconciler demo` as a user runs it: real processes, faults, a scored report.

The simulator and the service are two processes; the merchant endpoint is a receiver in
the demo's own process, verifying every notification's signature.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(90)
# The demos' --timeout (55 s) leaves room for a retried delivery that an idle sweep finds
# only at its 30 s idle check (deliveries do not announce their next attempt yet).


def test_demo_settles_every_payment_correctly_under_faults(tmp_path: Path) -> None:
    plot = tmp_path / "demo.png"
    argv = [
        *(sys.executable, "-m", "reconciler.entrypoints.cli", "demo"),
        *("--payments", "40", "--seed", "3", "--settle-max", "5"),
        *("--outage-at", "2", "--outage", "3", "--timeout", "55"),
        *("--json", "--plot", str(plot)),
    ]
    # Bytes, not text: text mode would turn a stray \r into a newline and hide it.
    run = subprocess.run(argv, capture_output=True, timeout=85, check=False)
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
    assert report["notifications"]["lost"] == 0
    assert report["notifications"]["pending"] == 0
    assert "verdict         OK" in text
    assert "policy          first poll after 2 s, then 1 s x2 up to 8 s, give up after 1 h" in text
    # Not on a terminal, the progress went to stderr as plain lines, none redrawn with \r.
    assert f"\n[{'#' * 30}] 40/40 settled" in stderr
    assert "\r" not in stderr
    assert plot.stat().st_size > 10_000


def _section(text: str, label: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {label} "))
    end = start + 1
    while end < len(lines) and lines[end].startswith(" " * 18):
        end += 1
    return [line.strip() for line in lines[start:end]]


def test_demo_notifies_the_merchant_of_every_change_through_endpoint_faults() -> None:
    argv = [
        *(sys.executable, "-m", "reconciler.entrypoints.cli", "demo"),
        *("--payments", "30", "--seed", "5", "--settle-max", "4", "--outage", "0"),
        *("--endpoint-503", "0.2", "--endpoint-slow", "0.1"),
        *("--endpoint-outage-at", "2", "--endpoint-outage", "3", "--timeout", "55", "--json"),
    ]
    run = subprocess.run(argv, capture_output=True, timeout=85, check=False)
    stdout, stderr = run.stdout.decode(), run.stderr.decode()
    assert run.returncode == 0, stdout + stderr

    text, _, raw = stdout.partition("\n{")
    notified = json.loads("{" + raw)["notifications"]
    # Every payment settled, so each has one status event, delivered and verified.
    assert notified["events"] == notified["deliveries"] == notified["delivered"] >= 30
    assert (notified["failed"], notified["pending"], notified["lost"]) == (0, 0, 0)
    assert notified["merchant_view"] == {"settled": 30, "matches": 30}
    assert notified["answers"]["rejected"] == 0
    # The faults happened, and were retried through.
    assert notified["answers"]["outage"] > 0
    assert notified["attempts"] > notified["deliveries"]
    assert notified["latency_s"]["n"] == notified["events"]
    section = _section(text, "notifications")
    assert section[0].endswith("0 failed, 0 pending; 0 lost")
    assert section[3].startswith("status change -> delivered: p50 ")
    assert "every status change reached the endpoint, signature verified: 0 lost" in text
    assert "notify policy   at once, then 0.5 s x2 up to 4 s, give up after 1 h; timeout 2 s" in (
        text
    )
    assert f"[{'#' * 30}] " in stderr and " notified " in stderr


def test_demo_refuses_an_empty_population() -> None:
    argv = [sys.executable, "-m", "reconciler.entrypoints.cli", "demo", "--payments", "0"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert run.returncode == 2
    assert "--payments" in run.stderr
