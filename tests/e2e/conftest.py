"""End-to-end fixtures: `reconciler serve` as a real process, driven over HTTP like a merchant."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from support.app import SECRETS_KEY

from reconciler.config import Settings
from reconciler.domain.policy import PollPolicy

# Short enough that a run converges in seconds; give-up bounds the schedule (see max_polls).
E2E_POLICY = PollPolicy(first_delay=1, base_delay=0.5, factor=2, max_delay=2, give_up_after=60)
E2E_SETTINGS = Settings(
    poll=E2E_POLICY, sweep_interval_s=0.2, read_timeout_s=3, secrets_key=(SECRETS_KEY,)
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `reconciler …` in a subprocess; fail the test with its output if it fails."""
    argv = [sys.executable, "-m", "reconciler.entrypoints.cli", *args]
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"reconciler {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


@dataclass
class Service:
    """A running `reconciler serve`: its address, its environment, its logs."""

    port: int
    env: dict[str, str]
    workdir: Path
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    http: requests.Session = field(default_factory=requests.Session)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create_merchant(self, name: str) -> dict[str, str]:
        """Create a merchant with the CLI; return its `Authorization` header."""
        out = cli("merchant", "create", name, env=self.env, cwd=self.workdir).stdout
        api_key = out.strip().splitlines()[-1]
        return {"Authorization": f"Bearer {api_key}"}

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(f"{self.url}{path}", timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.post(f"{self.url}{path}", timeout=10, **kwargs)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def logs(self, lines: int = 40) -> str:
        """The tail of both streams, for failure messages."""
        out = self.stdout_path.read_text(errors="replace").splitlines()[-lines:]
        err = self.stderr().splitlines()[-lines:]
        return "--- stdout ---\n" + "\n".join(out) + "\n--- stderr ---\n" + "\n".join(err)

    def stop(self) -> None:
        """Terminate (the server shuts down gracefully), then kill what is left."""
        self.http.close()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2
) -> float:
    """Poll `predicate` until it holds; return the seconds it took, or fail after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout} s")


@contextmanager
def run_service(
    tmp: Path, *, port: int, simulator_url: str, webhook_secret: str, **changes: Any
) -> Iterator[Service]:
    """Start `reconciler serve` on `port` with a temp SQLite file; stop it at exit.

    `changes` are settings by field name on top of `E2E_SETTINGS`.
    """
    env = E2E_SETTINGS.child_env(
        database_url=f"sqlite:///{tmp / 'reconciler.db'}",
        simulator_url=simulator_url,
        simulator_webhook_secret=(webhook_secret,),
        **changes,
    )
    env["PYTHONUNBUFFERED"] = "1"
    stdout_path, stderr_path = tmp / "serve.stdout", tmp / "serve.stderr"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler.entrypoints.cli", "serve", "--port", str(port)],
            cwd=tmp,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group: stopping it takes the workers too
        )
    service = Service(port, env, tmp, process, stdout_path, stderr_path)
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"serve exited with {process.returncode}\n{service.logs()}")
            try:
                return service.get("/healthz").status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, 30, "serve answering /healthz")
        yield service
    finally:
        service.stop()


@pytest.fixture
def service_port() -> int:
    return free_port()
