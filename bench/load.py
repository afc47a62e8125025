"""Load for the webhook benchmarks: pre-signed requests, wrk at saturation, a paced client.

Request files hold one pre-signed Standard Webhooks request a line (`webhook-id`,
`webhook-timestamp`, `webhook-signature`, body; tab-separated), each with its own id and
event time, for the payments `bench_gw_0 … bench_gw_{TRACKED-1}`. `saturate` sends them
as fast as the server answers (wrk with bench/webhooks.lua, 16 connections; a Python
thread pool without wrk). `paced` sends them at a fixed rate whatever the answers do
(open loop), and measures each latency from the moment the request was due, so a slow
answer that delays the next request counts against the server, not the schedule.
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from standardwebhooks import Webhook

from reconciler.demo.scoring import percentile

LUA = Path(__file__).with_name("webhooks.lua")
TRACKED = 200
CONNECTIONS = 16
THREADS = 2
PACED_CONNECTIONS = 32
PATH = "/webhooks/simulator"


def requests_file(path: Path, secret: str, count: int, first: int = 0) -> Path:
    """Write `count` signed requests numbered from `first` (distinct numbers, distinct events)."""
    signer = Webhook(secret)
    now = datetime.now(UTC)
    base = now - timedelta(hours=1)
    with path.open("w") as out:
        for i in range(first, first + count):
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
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert match, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def _wrk(url: str, requests_path: Path, duration_s: int) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{duration_s}s", "--latency"]
        + ["-s", str(LUA), url, "--", str(requests_path), str(THREADS)],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration_s + 60,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    latency = {q: _ms(v) for q, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: (.*)", out)
    return {
        "client": "wrk",
        "requests": total,
        "rps": round(rate, 1),
        "p50_ms": latency.get("50"),
        "p99_ms": latency.get("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sockets.group(1) if sockets else None,
    }


def _lines(requests_path: Path) -> list[tuple[str, dict[str, str], bytes]]:
    out = []
    for line in requests_path.read_text().splitlines():
        msg_id, ts, sig, body = line.split("\t", 3)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": ts,
            "webhook-signature": sig,
        }
        out.append((msg_id, headers, body.encode()))
    return out


def _send(
    url: str,
    requests_path: Path,
    connections: int,
    next_due: Any,
    total: int | None,
) -> dict[str, Any]:
    """Send requests from `connections` threads; `next_due(i)` is when request i is due."""
    items = _lines(requests_path)
    parts = urlsplit(url)
    latencies: list[float] = []
    bad = 0
    lock = threading.Lock()
    counter = itertools.count()

    def worker() -> None:
        nonlocal bad
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            while True:
                i = next(counter)
                due = next_due(i)
                if due is None or (total is not None and i >= total):
                    return
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                _, headers, body = items[i % len(items)]
                conn.request("POST", PATH, body=body, headers=headers)
                answer = conn.getresponse()
                answer.read()
                elapsed = (time.perf_counter() - due) * 1000
                with lock:
                    latencies.append(elapsed)
                    bad += answer.status != 200
        finally:
            conn.close()

    with ThreadPoolExecutor(connections) as pool:
        for _ in range(connections):
            pool.submit(worker)
    return {
        "requests": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "non_2xx": bad,
    }


def saturate(url: str, requests_path: Path, duration_s: int) -> dict[str, Any]:
    """Send as fast as the server answers for `duration_s`."""
    if shutil.which("wrk"):
        return _wrk(url, requests_path, duration_s)
    deadline = time.perf_counter() + duration_s

    def now_until_deadline(_i: int) -> float | None:
        now = time.perf_counter()
        return now if now < deadline else None

    result = _send(url, requests_path, CONNECTIONS, now_until_deadline, None)
    return {"client": "python", "rps": round(result["requests"] / duration_s, 1)} | result


def paced(url: str, requests_path: Path, rate: float, duration_s: int) -> dict[str, Any]:
    """Send `rate` requests per second for `duration_s`, each due at its own time."""
    start = time.perf_counter() + 0.2
    total = int(rate * duration_s)
    result = _send(url, requests_path, PACED_CONNECTIONS, lambda i: start + i / rate, total)
    elapsed = time.perf_counter() - start
    return {"client": "paced", "rate": round(rate, 1), "rps": round(total / elapsed, 1)} | result
