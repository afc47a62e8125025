"""`reconciler serve` stops cleanly on SIGTERM, SIGINT and SIGHUP (no reload)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import requests
from support.app import SIM_SECRET

from e2e.conftest import free_port, run_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_stop_signal_drains_stops_the_sweep_and_exits_zero(
    tmp_path: Path, signum: signal.Signals, workers: str
) -> None:
    with run_service(
        tmp_path,
        port=free_port(),
        simulator_url="http://127.0.0.1:9",  # never called: no payments
        webhook_secret=SIM_SECRET,
        workers=int(workers),
    ) as service:
        assert service.get("/healthz").status_code == 200
        # The signal goes to the process only (a terminal sends SIGHUP/SIGINT to the group,
        # which the workers would also get): the parent must pass it on.
        service.process.send_signal(signum)
        try:
            code = service.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not exit on {signum.name}\n{service.logs()}")
        assert code == 0, service.logs()
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{service.url}/healthz", timeout=2)
        assert '"msg": "stopped"' in service.stderr(), service.logs()
