"""Start the gateway simulator as a real process on loopback and drive its control plane.

    with run_simulator(seed=1, p_5xx=0.5) as sim:
        requests.post(f"{sim.url}/v1/payments", ...)
        sim.advance(10)
        assert sim.truth()["payments"][...]["status"] == "succeeded"

Keyword flags become command-line flags: `p_5xx=0.5` → `--p-5xx 0.5`, `no_webhooks=True` →
`--no-webhooks`, a list repeats the flag (`outage=["0:5", "30:5"]`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

_LISTENING = re.compile(r"simulator listening on (http://\S+)")


class Simulator:
    """A running simulator process: its URL and its control plane."""

    def __init__(self, url: str, process: subprocess.Popen[str], log_path: Path) -> None:
        self.url = url
        self.process = process
        self.log_path = log_path
        self.session = requests.Session()

    def _get(self, path: str) -> Any:
        response = self.session.get(f"{self.url}/_sim/{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    def _post(self, path: str, body: dict[str, Any], timeout: float = 10) -> Any:
        response = self.session.post(f"{self.url}/_sim/{path}", json=body, timeout=timeout)
        response.raise_for_status()
        return response.json()

    def truth(self) -> dict[str, Any]:
        """Ground truth: `{"payments": {id: {status, settled_at, final_status, final_at, …}}}`."""
        return self._get("truth")  # type: ignore[no-any-return]

    def calls(self) -> dict[str, Any]:
        """Gateway API calls per payment, plus totals."""
        return self._get("calls")  # type: ignore[no-any-return]

    def webhooks(self) -> dict[str, Any]:
        """Webhook delivery attempts and losses."""
        return self._get("webhooks")  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        return self._get("stats")  # type: ignore[no-any-return]

    def clock(self) -> dict[str, Any]:
        return self._get("clock")  # type: ignore[no-any-return]

    def create(self, **fields: Any) -> dict[str, Any]:
        """Create a payment bypassing faults (`final_status=`, `settle_after_s=`, …)."""
        return self._post("payments", fields)  # type: ignore[no-any-return]

    def advance(self, seconds: float) -> dict[str, Any]:
        """Move the simulator clock forward."""
        return self._post("clock", {"advance_s": seconds})  # type: ignore[no-any-return]

    def set_faults(self, **fields: Any) -> dict[str, Any]:
        """Change runtime settings (`SimConfig` field names, e.g. `p_5xx=0.3`)."""
        return self._post("faults", fields)  # type: ignore[no-any-return]

    def outage(self, seconds: float) -> dict[str, Any]:
        """Start an outage now (simulator time)."""
        return self._post("outage", {"duration_s": seconds})  # type: ignore[no-any-return]

    def flush(self, timeout: float = 20.0) -> dict[str, Any]:
        """Deliver every due webhook and wait until none is due."""
        body = {"timeout_s": timeout}
        return self._post("flush", body, timeout=timeout + 5)  # type: ignore[no-any-return]

    def log(self) -> str:
        """What the process wrote to stdout/stderr so far (for failure messages)."""
        return self.log_path.read_text(errors="replace")


def _flags(flags: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, list | tuple):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    return argv


@contextmanager
def run_simulator(*, startup_timeout: float = 15.0, **flags: Any) -> Iterator[Simulator]:
    """Start `python -m reconciler.simulator` on a free loopback port; kill it at exit."""
    flags.setdefault("host", "127.0.0.1")
    flags.setdefault("port", 0)  # the simulator binds a free port and prints it
    argv = [sys.executable, "-m", "reconciler.simulator", *_flags(flags)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="sim-") as tmp:
        log_path = Path(tmp) / "simulator.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        found: list[str] = []
        listening = threading.Event()

        def drain() -> None:
            # Read every line, so the process never blocks on a full pipe.
            assert process.stdout is not None
            for line in process.stdout:
                match = _LISTENING.search(line)
                if match and not found:
                    found.append(match.group(1))
                    listening.set()

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        simulator: Simulator | None = None
        try:
            if not listening.wait(startup_timeout):
                raise RuntimeError(
                    f"simulator did not start within {startup_timeout} s:\n"
                    + log_path.read_text(errors="replace")
                )
            simulator = Simulator(found[0], process, log_path)
            yield simulator
        finally:
            if simulator is not None:
                simulator.session.close()
            process.kill()
            process.wait(timeout=10)
            reader.join(timeout=5)
            if process.stdout is not None:
                process.stdout.close()
