"""Webhook ingestion: signed webhooks per second and latency on the production server.

`reconciler serve` (waitress, see reconciler/entrypoints/server.py) receives pre-signed
Standard Webhooks events, each with its own `webhook-id` and a fresh timestamp, for
payments it tracks: every request is verified, stored in the inbox and applied before the
200. The ceiling is a bare WSGI app that reads the body and answers 200
(bench/bare_app.py), served by waitress with the same threads. Load: wrk with
bench/webhooks.lua (a Python thread-pool client when wrk is not installed).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from standardwebhooks import Webhook

from bench.common import ratio, say
from reconciler.config import Settings
from reconciler.demo.profile import Profile
from reconciler.demo.scoring import percentile
from reconciler.demo.stack import free_port, run_stack, stop_process

ROOT = Path(__file__).resolve().parents[1]
LUA = Path(__file__).with_name("webhooks.lua")
TRACKED = 200
CONNECTIONS = 16
THREADS = 2
SERVER_THREADS = Settings().threads


def _requests_file(path: Path, secret: str, count: int) -> None:
    signer = Webhook(secret)
    now = datetime.now(UTC)
    base = now - timedelta(hours=1)
    with path.open("w") as out:
        for i in range(count):
            status = "processing" if i % 2 else "requires_action"
            at = (base + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z")
            data = {
                "id": f"bench_gw_{i % TRACKED}",
                "status": status,
                "amount": 1000,
                "currency": "USD",
                "updated_at": at,
            }
            body = json.dumps(
                {"type": f"payment.{status}", "timestamp": at, "data": data},
                separators=(",", ":"),
            )
            msg_id = f"msg_bench_{i:08d}"
            signature = signer.sign(msg_id, now, body)
            out.write(f"{msg_id}\t{int(now.timestamp())}\t{signature}\t{body}\n")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert match, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def _wrk(url: str, requests_path: Path, duration_s: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            "wrk",
            f"-t{THREADS}",
            f"-c{CONNECTIONS}",
            f"-d{duration_s}s",
            "--latency",
            "-s",
            str(LUA),
            url,
            "--",
            str(requests_path),
            str(THREADS),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration_s + 60,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = {q: _ms(v) for q, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: (.*)", out)
    return {
        "client": "wrk",
        "rps": round(rate, 1),
        "p50_ms": latency.get("50"),
        "p99_ms": latency.get("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sockets.group(1) if sockets else None,
    }


def _python_client(url: str, requests_path: Path, duration_s: int) -> dict[str, Any]:
    lines = requests_path.read_text().splitlines()
    latencies: list[float] = []
    bad = 0
    lock = threading.Lock()
    counter = iter(range(10**9))
    deadline = time.monotonic() + duration_s

    def worker() -> None:
        nonlocal bad
        session = requests.Session()
        while time.monotonic() < deadline:
            msg_id, ts, sig, body = lines[next(counter) % len(lines)].split("\t", 3)
            headers = {
                "Content-Type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": ts,
                "webhook-signature": sig,
            }
            started = time.perf_counter()
            response = session.post(f"{url}/webhooks/simulator", data=body, headers=headers)
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                bad += response.status_code != 200

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        for _ in range(CONNECTIONS):
            pool.submit(worker)
    return {
        "client": "python",
        "rps": round(len(latencies) / duration_s, 1),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "non_2xx": bad,
        "socket_errors": None,
    }


def _load(url: str, requests_path: Path, duration_s: int) -> dict[str, Any]:
    if shutil.which("wrk"):
        return _wrk(url, requests_path, duration_s)
    return _python_client(url, requests_path, duration_s)


def _bare_server(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    log = (workdir / "bare.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "waitress",
            f"--threads={SERVER_THREADS}",
            f"--listen=127.0.0.1:{port}",
            "bench.bare_app:app",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=Settings().child_env(),
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            requests.post(f"http://127.0.0.1:{port}/", data=b"{}", timeout=1)
            return process
        except requests.RequestException:
            time.sleep(0.1)
    stop_process(process)
    raise RuntimeError("the bare waitress server did not start")


def run(quick: bool) -> dict[str, Any]:
    duration = 5 if quick else 15
    count = 20_000 if quick else 60_000
    workdir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    try:
        profile = Profile(payments=0, webhooks=False, first_delay_s=3600, outage_s=0)
        env = {"RECONCILER_THREADS": str(SERVER_THREADS)}
        with run_stack(profile, service_env=env) as stack:
            for i in range(TRACKED):
                response = stack.http.post(
                    f"{stack.service_url}/v1/payments",
                    json={
                        "merchant_reference": f"bench-{i}",
                        "gateway": "simulator",
                        "amount": 1000,
                        "currency": "USD",
                        "gateway_payment_id": f"bench_gw_{i}",
                    },
                    headers=stack.headers,
                    timeout=30,
                )
                response.raise_for_status()
            path = workdir / "requests.tsv"
            say(f"webhooks: signing {count} requests...")
            _requests_file(path, stack.webhook_secret, count)
            say(f"webhooks: reconciler serve, {duration} s...")
            service = _load(stack.service_url, path, duration)
        say(f"webhooks: bare waitress 'return 200', {duration} s...")
        port = free_port()
        bare = _bare_server(port, workdir)
        try:
            baseline = _load(f"http://127.0.0.1:{port}", path, duration)
        finally:
            stop_process(bare)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "duration_s": duration,
        "connections": CONNECTIONS,
        "server": f"waitress, 1 process, {SERVER_THREADS} threads",
        "service": service,
        "bare": baseline,
        "ratios": {
            "rps service/bare": ratio(service["rps"], baseline["rps"]),
            "p99 service/bare": ratio(service["p99_ms"], baseline["p99_ms"]),
        },
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"webhook ingestion ({result['server']}, {result['connections']} connections, "
        f"{result['duration_s']} s, client {result['service']['client']})"
    ]
    for name in ("service", "bare"):
        row = result[name]
        lines.append(
            f"  {name:<8}{row['rps']:>10.1f} req/s   p50 {row['p50_ms']:.2f} ms"
            f"   p99 {row['p99_ms']:.2f} ms   non-2xx {row['non_2xx']}"
        )
    for key, value in result["ratios"].items():
        lines.append(f"  ratio {key}: {value}")
    return "\n".join(lines)
