"""The Celery baseline's tasks: create at the gateway, then poll with retry(countdown=...).

What a team would write from the seed's suggestion: `create` makes the payment at the
gateway (idempotency key = the reference) and schedules `poll` after the first delay;
`poll` fetches the payment and, until it is terminal, retries itself after the policy's
jittered backoff (`countdown` in bench/celery_baseline.py). The worker remembers a settled
payment in a Redis hash. Settings come from the environment the benchmark sets:
BENCH_REDIS_URL, BENCH_SIMULATOR_URL, BENCH_POLICY.
"""

from __future__ import annotations

import os
import random
import threading
from datetime import UTC, datetime
from functools import cache
from typing import Any

import redis
import requests
from celery import Celery

from bench.celery_baseline import READY_KEY, SETTLED_KEY, countdown, parse_policy
from reconciler.domain.policy import PollPolicy

TERMINAL = ("succeeded", "failed", "canceled")
TIMEOUT = (3.05, 10.0)

app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)
_local = threading.local()


def _http() -> requests.Session:
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


@cache
def _store() -> redis.Redis:
    return redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


@cache
def _policy() -> PollPolicy:
    return parse_policy(os.environ["BENCH_POLICY"])


def _api() -> str:
    return f"{os.environ['BENCH_SIMULATOR_URL']}/v1/payments"


@app.task
def ping() -> None:
    """Say the worker is up."""
    _store().set(READY_KEY, 1)


@app.task(bind=True, max_retries=None)
def create(self: Any, i: int) -> None:
    """Create payment `i` at the gateway, then schedule its first poll."""
    reference = f"celery-{i:06d}"
    body = {"amount": 100 + (i * 7919) % 99_900, "currency": "USD", "reference": reference}
    try:
        response = _http().post(
            _api(), json=body, headers={"Idempotency-Key": reference}, timeout=TIMEOUT
        )
        response.raise_for_status()
    except requests.RequestException as exc:
        raise self.retry(exc=exc, countdown=_policy().base_delay) from exc
    poll.apply_async((response.json()["id"],), countdown=_policy().first_delay)


@app.task(bind=True, max_retries=None)
def poll(self: Any, gateway_id: str) -> None:
    """Fetch the payment; remember it when terminal, else retry after the backoff."""
    status = None
    try:
        response = _http().get(f"{_api()}/{gateway_id}", timeout=TIMEOUT)
        if response.status_code == 200:
            status = response.json().get("status")
    except requests.RequestException:
        pass
    if status in TERMINAL:
        _store().hset(SETTLED_KEY, gateway_id, f"{datetime.now(UTC).isoformat()} {status}")
        return
    raise self.retry(countdown=countdown(self.request.retries, _policy(), random.random()))
