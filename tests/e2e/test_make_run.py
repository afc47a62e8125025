"""`make run`'s entry point: the service and the simulator come up together and talk."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from e2e.conftest import free_port

pytestmark = pytest.mark.slow


def test_make_run_serves_the_readme_walk_through(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    env = {
        **os.environ,
        "RECONCILER_PORT": str(port),
        "RECONCILER_SIMULATOR_PORT": str(sim_port),
        "RECONCILER_LOG_LEVEL": "WARNING",
    }
    env.pop("RECONCILER_DATABASE_URL", None)  # the default: reconciler.db in the cwd
    out = tmp_path / "out.log"
    with out.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler.entrypoints.devrun"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        else:
            raise AssertionError(out.read_text())
        text = out.read_text()
        key = re.search(r"shown once:\n(rk_\S+)", text)
        assert key, text
        headers = {"Authorization": f"Bearer {key.group(1)}"}
        created = requests.post(
            f"{base}/v1/payments",
            json={
                "merchant_reference": "order-1042",
                "gateway": "simulator",
                "amount": 49900,
                "currency": "INR",
            },
            headers=headers,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        payment = created.json()
        assert payment["gateway_payment_id"].startswith("sim_pay_")
        assert (tmp_path / "reconciler.db").exists()
        # The simulator settles within 20 s and sends a webhook (or, if it lost it, the
        # sweep polls after the 30 s grace): wait for either.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = requests.get(f"{base}/v1/payments/{payment['id']}", headers=headers, timeout=5)
            if seen.json()["status"] != "pending":
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"still pending: {seen.json()}")
        truth = requests.get(f"http://127.0.0.1:{sim_port}/_sim/truth", timeout=5).json()
        assert seen.json()["status"] == truth["payments"][payment["gateway_payment_id"]]["status"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
