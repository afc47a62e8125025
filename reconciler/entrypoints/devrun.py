"""`make run`: the service on SQLite with the gateway simulator started beside it.

The simulator listens on RECONCILER_SIMULATOR_PORT (8100), signs its webhooks with a
secret generated for this run, and delivers them to this service. A merchant `dev` is
created on each start and its API key printed, so the README's curl walk-through works
with no set-up. To talk to a real gateway instead, run `reconciler serve` with that
gateway's RECONCILER_* credentials (see README).
"""

from __future__ import annotations

import atexit
import base64
import os
import secrets
import subprocess
import sys
import time

import requests

from reconciler.config import Settings
from reconciler.entrypoints import commands


def main() -> int:
    env = os.environ
    sim_port = int(env.get("RECONCILER_SIMULATOR_PORT", "8100"))
    secret = env.get("RECONCILER_SIMULATOR_WEBHOOK_SECRET") or (
        "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    )
    settings = Settings.from_env()
    sim_url = f"http://127.0.0.1:{sim_port}"
    env["RECONCILER_SIMULATOR_URL"] = sim_url
    env["RECONCILER_SIMULATOR_WEBHOOK_SECRET"] = secret
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler.simulator",
            "--port",
            str(sim_port),
            "--webhook-url",
            f"http://{settings.host}:{settings.port}/webhooks/simulator",
            "--webhook-secret",
            secret,
            "--settle-min",
            "2",
            "--settle-max",
            "20",
            "--webhook-loss",
            "0.2",
        ],
        env=dict(env),
    )
    atexit.register(_stop, simulator)
    _wait_for(f"{sim_url}/_sim/clock", simulator)
    settings = Settings.from_env()
    commands.upgrade(settings)
    print("\nA merchant for trying the API (see README for the curl walk-through):")
    commands.create_merchant(settings, "dev")
    print(f"\nsimulator on {sim_url}; service on http://{settings.host}:{settings.port}\n")
    return commands.serve(settings, host=None, port=None)


def _wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                "the simulator exited; is its port taken? set RECONCILER_SIMULATOR_PORT"
            )
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit("the simulator did not start")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    sys.exit(main())
