"""Gateway HTTP: CPU per call of `SimulatorGateway.fetch_payment` against two bare clients.

The fake gateway (bench/fake_gateway.py: HTTP/1.1 keep-alive, answers at once) serves
`GET /v1/payments/<id>`; this process makes N calls from T threads three ways, taking
turns, in the same run: the service's gateway client (the transport `bootstrap` builds,
the response checked and parsed into a `GatewayPayment`), a bare `requests` session
(`trust_env` off, as the service's was) `.get(…).json()`, and a bare
`urllib3.PoolManager().request(…)` + `json.loads`. CPU is this process's
(`time.process_time`) ÷ calls, the median of the turns; the fake gateway runs in its own
process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
import urllib3

from bench.common import median, ratio, say
from reconciler.adapters.gateways.simulator import SimulatorGateway
from reconciler.adapters.gateways.transport import HttpClient
from reconciler.bootstrap import build_gateways
from reconciler.config import Settings
from reconciler.demo.stack import stop_process

THREADS = 8
ROUNDS = 5  # the three ways take turns, so a burst of load elsewhere hits them alike


def _gateway() -> tuple[subprocess.Popen[bytes], str]:
    log = Path(tempfile.mkstemp(prefix="bench-fake-gateway-")[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_gateway", "--latency", "0"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = log.read_text()
        if "listening on" in text:
            return process, text.split("listening on ")[1].split()[0]
        time.sleep(0.05)
    stop_process(process)
    raise RuntimeError("the fake gateway did not start")


def _cpu_per_call(calls: int, one: Callable[[int], Any]) -> float:
    started = time.process_time()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(calls)))
    return (time.process_time() - started) / calls * 1e6


def run(quick: bool) -> dict[str, Any]:
    calls = 3000 if quick else 20000
    process, url = _gateway()
    try:
        settings = Settings(simulator_url=url)
        gateway = build_gateways(settings, HttpClient(THREADS))["simulator"]
        assert isinstance(gateway, SimulatorGateway)
        session = requests.Session()
        session.trust_env = False  # as the service's requests session was: no proxy lookups
        pool = urllib3.PoolManager(maxsize=THREADS)
        ways: dict[str, Callable[[int], Any]] = {
            "service client": lambda i: gateway.fetch_payment(f"ceiling_{i}"),
            "bare requests": lambda i: session.get(
                f"{url}/v1/payments/ceiling_{i}", timeout=(2, 5)
            ).json(),
            "bare urllib3": lambda i: json.loads(
                pool.request("GET", f"{url}/v1/payments/ceiling_{i}", timeout=5).data
            ),
        }
        for one in ways.values():  # warm up: connections, imports
            _cpu_per_call(100, one)
        say(f"gateway http: {calls} calls each way, in {ROUNDS} turns...")
        turns: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(ROUNDS):
            for name, one in ways.items():
                turns[name].append(_cpu_per_call(calls // ROUNDS, one))
        out = {name: round(median(values), 1) for name, values in turns.items()}
    finally:
        stop_process(process)
    return {
        "calls": calls,
        "threads": THREADS,
        "cpu_us_per_call": out,
        "ratios": {
            "service/bare requests": ratio(out["service client"], out["bare requests"]),
            "service/bare urllib3": ratio(out["service client"], out["bare urllib3"]),
        },
    }


def render(result: dict[str, Any]) -> str:
    lines = [f"gateway HTTP ({result['calls']} fetches, {result['threads']} threads, keep-alive)"]
    for name, us in result["cpu_us_per_call"].items():
        lines.append(f"  {name:<16}{us:>8.1f} µs CPU per call")
    lines += [f"  ratio {key}: {value}" for key, value in result["ratios"].items()]
    return "\n".join(lines)
