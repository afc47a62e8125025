"""Webhook ingestion: signed webhooks per second, CPU per webhook, latency at half load.

`reconciler serve` (waitress, see reconciler/entrypoints/server.py, the sweep running)
receives pre-signed Standard Webhooks events (bench/load.py), each with its own
`webhook-id` and event time, for payments it tracks: every request is verified, stored
in the inbox and applied before the 200. Per database (SQLite, and PostgreSQL when the
local binaries are there), in the same run:

- saturation: wrk, 16 connections, as fast as the server answers; the service process's
  CPU-s (from /proc) ÷ webhooks answered;
- half of saturation: the paced client at half that rate, p50 / p99 from each request's
  due time;
- store-and-ack (bench/store_ack.py): the same server and Flask, verify the signature
  and INSERT the raw body, nothing else, into the same kind of database: its saturation
  and CPU per webhook. The service's rate ÷ this one is the headline ratio.

The bare ceiling is a WSGI app that reads the body and answers 200 (bench/bare_app.py)
under waitress with the same threads.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from bench.common import postgres, ratio, say
from bench.cpu import cpu_seconds
from bench.load import CONNECTIONS, TRACKED, paced, requests_file, saturate
from reconciler.config import Settings
from reconciler.demo.profile import Profile
from reconciler.demo.stack import free_port, run_stack, stop_process

ROOT = Path(__file__).resolve().parents[1]
SERVER_THREADS = Settings().threads


def _with_cpu(pid: int, url: str, path: Path, duration_s: int) -> dict[str, Any]:
    """Saturate the server at `url` and add its process tree's CPU per answered request."""
    before = cpu_seconds([pid])
    result = saturate(url, path, duration_s)
    cpu = cpu_seconds([pid]) - before
    result["cpu_s"] = round(cpu, 2)
    result["cpu_ms_per_webhook"] = round(cpu / max(1, result["requests"]) * 1000, 3)
    return result


def _service(database_url: str, duration_s: int, count: int, work: Path) -> dict[str, Any]:
    profile = Profile(payments=0, webhooks=False, first_delay_s=3600, outage_s=0)
    env = {"RECONCILER_THREADS": str(SERVER_THREADS)}
    with run_stack(profile, service_env=env, database_url=database_url) as stack:
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
        pid = stack.processes[-1].pid
        say(f"webhooks: reconciler serve, saturation, {duration_s} s...")
        sat_file = requests_file(work / "service.tsv", stack.webhook_secret, count)
        saturation = _with_cpu(pid, stack.service_url, sat_file, duration_s)
        half = max(1.0, saturation["rps"] / 2)
        say(f"webhooks: reconciler serve, paced at {half:.0f}/s, {duration_s} s...")
        paced_file = requests_file(
            work / "paced.tsv", stack.webhook_secret, int(half * duration_s) + 100, first=count
        )
        at_half = paced(stack.service_url, paced_file, half, duration_s)
        return {"secret": stack.webhook_secret, "saturation": saturation, "half": at_half}


@contextmanager
def _waitress(target: list[str], env: dict[str, str], work: Path) -> Iterator[tuple[str, int]]:
    """Run waitress-serve on a free port with these app arguments; yield its URL and pid."""
    port = free_port()
    log = (work / "waitress.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "waitress", f"--threads={SERVER_THREADS}"]
        + [f"--listen=127.0.0.1:{port}", *target],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=Settings().child_env() | env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/", timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"waitress {target} did not start") from None
                time.sleep(0.1)
        yield url, process.pid
    finally:
        stop_process(process)


def _store_ack(
    database_url: str, secret: str, duration_s: int, count: int, work: Path
) -> dict[str, Any]:
    env = {"BENCH_STORE_ACK_DATABASE_URL": database_url, "BENCH_STORE_ACK_SECRET": secret}
    path = requests_file(work / "store_ack.tsv", secret, count, first=2 * count)
    with _waitress(["--call", "bench.store_ack:create_app"], env, work) as (url, pid):
        say(f"webhooks: store-and-ack, saturation, {duration_s} s...")
        return _with_cpu(pid, url, path, duration_s)


def _database(name: str, urls: dict[str, str], duration_s: int, count: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    try:
        say(f"webhooks on {name}...")
        service = _service(urls["service"], duration_s, count, work)
        baseline = _store_ack(urls["store_ack"], service["secret"], duration_s, count, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sat, half = service["saturation"], service["half"]
    return {
        "database": name,
        "service": sat,
        "service_at_half": half,
        "store_ack": baseline,
        "ratios": {
            "rps service/store-and-ack": ratio(sat["rps"], baseline["rps"]),
            "cpu per webhook service/store-and-ack": ratio(
                sat["cpu_ms_per_webhook"], baseline["cpu_ms_per_webhook"]
            ),
        },
    }


def _bare(duration_s: int, count: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-webhooks-bare-"))
    try:
        path = requests_file(work / "bare.tsv", "whsec_" + "YmFyZS1zZXJ2ZXItc2VjcmV0", count)
        with _waitress(["bench.bare_app:app"], {}, work) as (url, pid):
            say(f"webhooks: bare waitress 'return 200', {duration_s} s...")
            return _with_cpu(pid, url, path, duration_s)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(quick: bool) -> dict[str, Any]:
    duration = 5 if quick else 15
    count = 20_000 if quick else 60_000
    tmp = Path(tempfile.mkdtemp(prefix="bench-webhooks-db-"))
    runs = []
    try:
        sqlite = {k: f"sqlite:///{tmp / f'{k}.db'}" for k in ("service", "store_ack")}
        runs.append(_database("sqlite", sqlite, duration, count))
        with postgres() as server:
            if server is not None:
                pg = {k: server.create_database(f"bench_webhooks_{k}") for k in sqlite}
                runs.append(_database("postgresql", pg, duration, count))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bare = _bare(duration, count)
    for one in runs:
        one["ratios"]["rps service/bare"] = ratio(one["service"]["rps"], bare["rps"])
    return {
        "duration_s": duration,
        "connections": CONNECTIONS,
        "server": f"waitress, 1 process, {SERVER_THREADS} threads",
        "runs": runs,
        "bare": bare,
    }


def _row(name: str, row: dict[str, Any]) -> str:
    cpu = row.get("cpu_ms_per_webhook")
    return (
        f"  {name:<22}{row['rps']:>9.1f} req/s   p50 {row['p50_ms']:.2f} ms"
        f"   p99 {row['p99_ms']:.2f} ms   non-2xx {row['non_2xx']}"
        + (f"   CPU {cpu:.3f} ms/webhook" if cpu is not None else "")
    )


def render(result: dict[str, Any]) -> str:
    lines = [
        f"webhook ingestion ({result['server']}, {result['connections']} connections at "
        f"saturation, {result['duration_s']} s each)"
    ]
    for one in result["runs"]:
        half = one["service_at_half"]
        lines += [
            f"  {one['database']}:",
            _row("service, saturated", one["service"]),
            _row(f"service at {half['rate']:.0f}/s", half),
            _row("store-and-ack", one["store_ack"]),
        ]
        lines += [f"    ratio {key}: {value}" for key, value in one["ratios"].items()]
    lines.append(_row("bare 'return 200'", result["bare"]))
    return "\n".join(lines)
