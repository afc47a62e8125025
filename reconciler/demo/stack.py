"""The demo's processes: the gateway simulator and `reconciler serve` on free loopback ports.

`child_env` is the one place that writes a child process's environment; `run_stack` starts
both processes (SQLite in a temporary directory, a fresh webhook secret) and stops them,
whatever happens. The benchmarks (`bench/`) start their stacks here too.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from reconciler.adapters.secrets import new_key
from reconciler.config import Settings
from reconciler.demo.profile import Profile


def free_port() -> int:
    """Ask the kernel for a free loopback port (closed again at once; a small race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# One key per demo or benchmark process, shared by every child it starts.
STACK_SECRETS_KEY = new_key()


def new_webhook_secret() -> str:
    """Make a Standard Webhooks secret (`whsec_` + base64 of 24 random bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def child_env(
    profile: Profile | None = None,
    *,
    database_url: str | None = None,
    simulator_url: str | None = None,
    webhook_secret: str | None = None,
    port: int | None = None,
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Return the environment for a child process of the demo or a benchmark.

    `base` (this process's environment by default) is kept without its `RECONCILER_*`
    variables, so the caller's own settings do not leak into a throw-away stack; then come
    the profile's poll and delivery policies, sweep and breaker settings (and loopback
    endpoints allowed), the addresses and the secret given, and `extra` (variables by
    name) last.
    """
    changes: dict[str, Any] = {}
    if profile is not None:
        changes |= {
            "poll": profile.policy,
            "sweep_interval_s": profile.sweep_interval_s,
            "breaker_cooldown_s": profile.breaker_cooldown_s,
            "breaker_max_cooldown_s": profile.breaker_max_cooldown_s,
            "read_timeout_s": profile.gateway_timeout_s,
            "create_timeout_s": profile.gateway_timeout_s,
            "log_level": "WARNING",
            "notify_base_delay_s": profile.notify_base_delay_s,
            "notify_factor": profile.notify_factor,
            "notify_max_delay_s": profile.notify_max_delay_s,
            "notify_give_up_after_s": profile.notify_give_up_after_s,
            "notify_timeout_s": profile.notify_timeout_s,
            "notify_max_in_flight_per_endpoint": profile.notify_max_in_flight_per_endpoint,
            # The demo's merchant endpoint listens on loopback.
            "notify_allow_private": True,
        }
    if database_url is not None:
        changes["database_url"] = database_url
        # A throw-away stack: its endpoint secrets are sealed with a throw-away key.
        changes["secrets_key"] = (STACK_SECRETS_KEY,)
    if simulator_url is not None:
        changes["simulator_url"] = simulator_url
    if webhook_secret is not None:
        # The secret travels in the environment, never on a command line.
        changes["simulator_webhook_secret"] = (webhook_secret,)
    if port is not None:
        changes["port"] = port
    env = Settings().child_env(base, **changes)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def simulator_args(profile: Profile, webhook_url: str) -> list[str]:
    """Return the simulator's command line for the profile's faults."""
    args = [
        *(sys.executable, "-m", "reconciler.simulator", "--port", "0"),
        *("--webhook-url", webhook_url),
        *("--settle-min", str(profile.settle_min_s), "--settle-max", str(profile.settle_max_s)),
        *("--webhook-loss", str(profile.webhook_loss)),
        *("--webhook-duplicate", str(profile.webhook_duplicate)),
        *("--webhook-reorder", str(profile.webhook_reorder)),
        *("--p-5xx", str(profile.p_5xx), "--latency-max", str(profile.latency_max_s)),
    ]
    if profile.seed is not None:
        args += ["--seed", str(profile.seed)]
    if not profile.webhooks:
        args.append("--no-webhooks")
    return args


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """Stop a child we started (its whole process group: the server may have workers)."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        process.wait(timeout=10)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cleanup_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so `finally` blocks stop the children."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


@dataclass
class Stack:
    """A running simulator and service, with a merchant's API key."""

    workdir: Path
    simulator_url: str
    service_url: str
    api_key: str
    webhook_secret: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    http: requests.Session = field(default_factory=requests.Session)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def sim(self, path: str) -> Any:
        response = self.http.get(f"{self.simulator_url}/_sim/{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def sim_post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.http.post(f"{self.simulator_url}/_sim/{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def payments(self) -> list[dict[str, Any]]:
        """Return every payment of the merchant, through the API (pages of 100)."""
        return self._pages("/v1/payments", {})

    def add_endpoint(self, url: str) -> dict[str, Any]:
        """Register a webhook endpoint for every event type; return it, with its secret."""
        response = self.http.post(
            f"{self.service_url}/v1/webhook_endpoints",
            json={"url": url, "description": "reconciler demo"},
            headers=self.headers,
            timeout=30,
        )
        response.raise_for_status()
        endpoint: dict[str, Any] = response.json()
        return endpoint

    def deliveries(self, endpoint_id: str, status: str = "") -> list[dict[str, Any]]:
        """Return an endpoint's deliveries (all, or those with one status), pages of 100."""
        path = f"/v1/webhook_endpoints/{endpoint_id}/deliveries"
        return self._pages(path, {"status": status} if status else {})

    def _pages(self, path: str, query: dict[str, str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {**query, "limit": 100}
            if cursor:
                params["cursor"] = cursor
            response = self.http.get(
                f"{self.service_url}{path}", params=params, headers=self.headers, timeout=30
            )
            response.raise_for_status()
            body = response.json()
            out.extend(body["data"])
            cursor = body.get("next_cursor")
            if not cursor:
                return out

    def logs(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _wait_for_line(
    path: Path, marker: str, process: subprocess.Popen[bytes], timeout: float
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                if marker in line:
                    return line
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{path.stem} did not start:\n{path.read_text(errors='replace')[-3000:]}")


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the service did not start:\n{log.read_text(errors='replace')[-3000:]}")


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


@contextmanager
def run_stack(
    profile: Profile,
    *,
    service_env: Mapping[str, str] | None = None,
    database_url: str | None = None,
) -> Iterator[Stack]:
    """Start simulator + `reconciler serve` on loopback; stop both, whatever happens."""
    workdir = Path(tempfile.mkdtemp(prefix="reconciler-demo-"))
    processes: list[subprocess.Popen[bytes]] = []
    stack: Stack | None = None
    try:
        secret = new_webhook_secret()
        port = free_port()
        service_url = f"http://127.0.0.1:{port}"
        sim_log = workdir / "simulator.log"
        simulator = _start(
            simulator_args(profile, f"{service_url}/webhooks/simulator"),
            child_env(webhook_secret=secret),
            sim_log,
        )
        processes.append(simulator)
        line = _wait_for_line(sim_log, "simulator listening on", simulator, 20)
        simulator_url = line.rsplit(" ", 1)[-1].strip()
        env = child_env(
            profile,
            database_url=database_url or f"sqlite:///{workdir / 'reconciler.db'}",
            simulator_url=simulator_url,
            webhook_secret=secret,
            port=port,
            extra=service_env,
        )
        cli = [sys.executable, "-m", "reconciler.entrypoints.cli"]
        merchant = subprocess.run(
            [*cli, "merchant", "create", "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if merchant.returncode != 0 or not merchant.stdout.strip():
            raise RuntimeError(f"merchant create failed:\n{merchant.stdout}\n{merchant.stderr}")
        api_key = merchant.stdout.strip().splitlines()[-1]
        service_log = workdir / "service.log"
        service = _start([*cli, "serve"], env, service_log)
        processes.append(service)
        _wait_healthy(service_url, service, service_log, 30)
        stack = Stack(workdir, simulator_url, service_url, api_key, secret, processes)
        yield stack
    finally:
        if stack is not None:
            stack.http.close()
        for process in reversed(processes):
            stop_process(process)
        shutil.rmtree(workdir, ignore_errors=True)
