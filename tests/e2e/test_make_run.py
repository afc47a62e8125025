"""`make run`'s entry point: ports checked first, its own simulator, one dev key kept."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from e2e.conftest import free_port
from reconciler.config import Settings
from reconciler.entrypoints.devrun import DevRunError, wait_for_simulator

pytestmark = pytest.mark.slow
DEVRUN = [sys.executable, "-m", "reconciler.entrypoints.devrun"]


def devrun_env(port: int, sim_port: int, listen_port: int = 8200) -> dict[str, str]:
    # No RECONCILER_DATABASE_URL: the default, reconciler.db in the working directory.
    return Settings(
        port=port, simulator_port=sim_port, listen_port=listen_port, log_level="WARNING"
    ).child_env()


@contextmanager
def make_run(tmp: Path, port: int, sim_port: int, listen_port: int = 8200) -> Iterator[Path]:
    """Run devrun in `tmp` until /healthz answers; yield its output file; stop it at exit."""
    out = tmp / f"out-{time.monotonic_ns()}.log"
    with out.open("w") as log:
        process = subprocess.Popen(
            DEVRUN,
            cwd=tmp,
            env=devrun_env(port, sim_port, listen_port),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, out.read_text()
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        else:
            raise AssertionError(out.read_text())
        yield out
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def printed_key(out: Path) -> str:
    found = re.search(r"its API key:\n(rk_\S+)", out.read_text())
    assert found, out.read_text()
    return found.group(1)


def printed_listen_command(out: Path) -> list[str]:
    found = re.search(r"reconciler listen --port (\d+) --secret (whsec_\S+)", out.read_text())
    assert found, out.read_text()
    return ["--port", found.group(1), "--secret", found.group(2)]


def test_make_run_serves_the_readme_walk_through(tmp_path: Path) -> None:
    port, sim_port, listen_port = free_port(), free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    with make_run(tmp_path, port, sim_port, listen_port) as out:
        headers = {"Authorization": f"Bearer {printed_key(out)}"}
        heard = tmp_path / "listen.log"
        with heard.open("w") as heard_out:
            listener = subprocess.Popen(
                [sys.executable, "-m", "reconciler.entrypoints.cli", "listen"]
                + printed_listen_command(out),
                stdout=heard_out,
                stderr=subprocess.STDOUT,
            )
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
        # The dev endpoint make run registered delivers the change, signed, to the listener.
        deadline = time.monotonic() + 30
        try:
            while payment["id"] not in heard.read_text() and time.monotonic() < deadline:
                time.sleep(0.3)
        finally:
            listener.terminate()
            listener.wait(10)
        assert f"payment.{seen.json()['status']}" in heard.read_text(), heard.read_text()
        assert "REJECTED" not in heard.read_text()


def test_a_restart_reuses_the_dev_key_and_a_rotation_replaces_it(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    body = {"merchant_reference": "o-1", "gateway": "simulator", "amount": 100, "currency": "EUR"}
    with make_run(tmp_path, port, sim_port) as out:
        first = printed_key(out)
        created = requests.post(
            f"http://127.0.0.1:{port}/v1/payments",
            json=body,
            headers={"Authorization": f"Bearer {first}"},
            timeout=10,
        )
        assert created.status_code == 201, created.text
    assert oct((tmp_path / ".reconciler-dev.json").stat().st_mode & 0o777) == "0o600"
    # The dev secrets key is kept beside the API key, and the endpoint secret is sealed.
    key_file = tmp_path / ".reconciler-dev-secrets-key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    dev_key = key_file.read_text()
    endpoint_secret = json.loads((tmp_path / ".reconciler-dev.json").read_text())["endpoint_secret"]
    stored = [tmp_path / "reconciler.db", tmp_path / "reconciler.db-wal"]
    assert endpoint_secret.startswith("whsec_")
    assert all(endpoint_secret.encode() not in f.read_bytes() for f in stored if f.exists())

    with make_run(tmp_path, port, sim_port) as out:
        assert printed_key(out) == first
        assert "reused" in out.read_text()
    assert key_file.read_text() == dev_key

    rotated = subprocess.run(
        [*DEVRUN, "--rotate-key"],
        cwd=tmp_path,
        env=devrun_env(port, sim_port),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip().splitlines()[-1]
    assert new.startswith("rk_") and new != first

    with make_run(tmp_path, port, sim_port) as out:
        assert printed_key(out) == new
        base = f"http://127.0.0.1:{port}/v1/payments"
        seen = requests.get(base, headers={"Authorization": f"Bearer {new}"}, timeout=5)
        assert [p["merchant_reference"] for p in seen.json()["data"]] == ["o-1"]
        gone = requests.get(base, headers={"Authorization": f"Bearer {first}"}, timeout=5)
        assert gone.status_code == 401


@pytest.mark.parametrize("busy", ["RECONCILER_PORT", "RECONCILER_SIMULATOR_PORT"])
def test_a_busy_port_stops_make_run_before_anything_with_the_variable_to_set(
    tmp_path: Path, busy: str
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        port, sim_port = free_port(), free_port()
        if busy == "RECONCILER_PORT":
            port = taken
        else:
            sim_port = taken
        done = subprocess.run(
            DEVRUN,
            cwd=tmp_path,
            env=devrun_env(port, sim_port),
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"port {taken} is taken; set {busy}" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no database, no merchant, no key file


class _Stranger(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_stranger_on_the_simulator_port_is_not_taken_for_the_simulator() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stranger)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(DevRunError, match="another server answers"):
            wait_for_simulator(url, ours, identity="our-token")
    finally:
        ours.kill()
        ours.wait()
        server.shutdown()
        server.server_close()
