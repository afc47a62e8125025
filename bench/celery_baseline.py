"""The baseline a Python team would build: a Celery worker on Redis, retry(countdown=...).

`running` starts redis-server (Debian's package) on a free loopback port and a Celery
worker (`celery -A bench.celery_app worker`, its defaults: prefork, one process per core)
and stops both, whatever happens. The tasks live in bench/celery_app.py; this module
imports neither Celery nor redis at import time, so the benchmarks load without them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.demo.stack import free_port, stop_process
from reconciler.domain.policy import PollPolicy

ROOT = Path(__file__).resolve().parents[1]
INSTALL = (
    "install them with `.venv/bin/pip install -e '.[bench]'` (Celery with Redis support) "
    "and `apt-get install redis-server`"
)
SETTLED_KEY = "bench:settled"  # hash: gateway id -> "<ISO time> <status>"
READY_KEY = "bench:ready"


def unavailable_reason() -> str | None:
    """Say why the Celery baseline cannot run here, or None when it can."""
    missing = [name for name in ("celery", "redis") if importlib.util.find_spec(name) is None]
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    if not missing:
        return None
    return f"{', '.join(missing)} not found; {INSTALL}"


def countdown(retries: int, policy: PollPolicy, u: float) -> float:
    """Return the delay before the next poll after `retries + 1` polls, `u` uniform in [0, 1).

    The service's schedule (`reconciler.domain.policy.next_poll`) written the way a Celery
    task writes it from `self.request.retries`: base x factor^retries, capped, jittered
    into [0.5, 1) of itself.
    """
    delay = min(policy.max_delay, policy.base_delay * policy.factor**retries)
    return delay * (0.5 + 0.5 * u)


def policy_env(policy: PollPolicy) -> str:
    """Return the policy as the worker reads it from BENCH_POLICY."""
    return ",".join(
        repr(x) for x in (policy.first_delay, policy.base_delay, policy.factor, policy.max_delay)
    )


def parse_policy(text: str) -> PollPolicy:
    """Read BENCH_POLICY (first,base,factor,max seconds) back into a policy."""
    first, base, factor, cap = (float(x) for x in text.split(","))
    return PollPolicy(first_delay=first, base_delay=base, factor=factor, max_delay=cap)


def parse_settled(raw: dict[bytes, bytes]) -> dict[str, tuple[datetime, str]]:
    """Decode the settled hash: gateway id -> (when the worker saw it terminal, status)."""
    out = {}
    for key, value in raw.items():
        at, status = value.decode().split(" ", 1)
        out[key.decode()] = (datetime.fromisoformat(at), status)
    return out


@dataclass
class Celery:
    """A running broker and worker, and the bench's side of them."""

    redis: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    client: Any  # redis.Redis
    create_task: Any  # the `create` task, to send

    def pids(self) -> list[int]:
        return [self.redis.pid, self.worker.pid]

    def create(self, i: int) -> None:
        self.create_task.delay(i)

    def settled_count(self) -> int:
        return int(self.client.hlen(SETTLED_KEY))

    def settled(self) -> dict[str, tuple[datetime, str]]:
        return parse_settled(self.client.hgetall(SETTLED_KEY))


@contextmanager
def running(simulator_url: str, policy: PollPolicy, workdir: Path) -> Iterator[Celery]:
    """Start redis-server and a Celery worker polling `simulator_url`; stop both at the end."""
    import redis

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    processes: list[subprocess.Popen[bytes]] = []
    client = None
    try:
        broker = _start(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(workdir)],
            os.environ.copy(),
            workdir / "redis.log",
        )
        processes.append(broker)
        client = redis.Redis.from_url(url)
        _until(lambda: client.ping(), broker, workdir / "redis.log")
        env = os.environ.copy() | {
            "BENCH_REDIS_URL": url,
            "BENCH_SIMULATOR_URL": simulator_url,
            "BENCH_POLICY": policy_env(policy),
            "PYTHONPATH": str(ROOT),
        }
        worker = _start(
            [sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker"]
            + ["--loglevel", "WARNING"],
            env,
            workdir / "celery.log",
        )
        processes.append(worker)
        from bench import celery_app

        celery_app.app.conf.broker_url = url  # the producer sends to this run's broker
        celery_app.ping.delay()
        _until(lambda: client.exists(READY_KEY), worker, workdir / "celery.log")
        yield Celery(broker, worker, client, celery_app.create)
    finally:
        if client is not None:
            client.close()
        for process in reversed(processes):
            stop_process(process)


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )


def _until(ready: Any, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if ready():
                return
        except Exception:  # not up yet: connection refused and the like
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{log.stem} did not start:\n{log.read_text(errors='replace')[-3000:]}")
