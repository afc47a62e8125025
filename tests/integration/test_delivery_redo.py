"""Retry and recover cause attempts at once, with the sweep driven only by its wake-ups.

The sweep job's safety interval is far longer than the tests: only the announcement of
a row made due (this process at once, other replicas by PostgreSQL's NOTIFY) can start
the attempts. The endpoint is down long enough to fail its deliveries and open its
breaker, then comes back; the merchant's retry or recover must reach it without waiting
for the breaker's cool-down.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.app import make_settings
from support.receiver import Receiver, run_receiver
from support.shop import Endpoint, Shop, eventually
from support.simulator import Simulator

from reconciler.bootstrap import Context, bootstrap
from reconciler.config import Settings
from reconciler.entrypoints.scheduler import SweepJob
from reconciler.services.sweep import Sweeper


def live_settings(db_url: str, simulator: Simulator) -> Settings:
    return make_settings(
        db_url,
        simulator.url,
        notify_allow_private=1,
        notify_timeout_s=2,
        notify_base_delay_s=0.05,
        notify_max_delay_s=0.1,
        notify_give_up_after_s=0.5,  # down for a moment is enough to fail a delivery
        breaker_threshold=2,
        breaker_cooldown_s=600,  # the breaker stays open for the whole test
        breaker_max_cooldown_s=600,
        sweep_interval_s=600,  # no safety tick: only wake-ups start attempts
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with run_receiver() as running:
        yield running


@pytest.fixture
def live_ctx(db_url: str, simulator: Simulator) -> Iterator[Context]:
    context = bootstrap(live_settings(db_url, simulator), rand=random.Random(9).random)
    yield context
    context.close()


def started(ctx: Context, tmp_path: Path, name: str) -> SweepJob:
    job = SweepJob(Sweeper(ctx), 600, lock_name=str(tmp_path / name))
    job.start()
    return job


def fail_everything(shop: Shop, receiver: Receiver, payments: int) -> Endpoint:
    """Register an endpoint that answers 503 until its deliveries have all failed."""
    receiver.status = 503
    endpoint = shop.endpoint(receiver.url)
    for n in range(payments):
        _, gid = shop.payment(f"down{n}")
        shop.report(gid, "succeeded")
    eventually(
        lambda: [d["status"] for d in shop.deliveries(endpoint)] == ["failed"] * payments,
        "every delivery failing while the endpoint is down",
    )
    return endpoint


def test_a_retry_reaches_an_endpoint_that_came_back_past_its_open_breaker(
    live_ctx: Context, simulator: Simulator, receiver: Receiver, tmp_path: Path
) -> None:
    shop = Shop(live_ctx, simulator)
    job = started(live_ctx, tmp_path, "one")
    try:
        endpoint = fail_everything(shop, receiver, 1)
        [delivery] = shop.deliveries(endpoint)
        before = len(receiver.received)
        receiver.status = 200  # the merchant fixed its endpoint
        answer = shop.client.post(
            f"/v1/webhook_endpoints/{endpoint.id}/deliveries/{delivery['id']}/retry",
            headers=shop.merchant.headers,
        )
        assert answer.status_code == 202
        eventually(
            lambda: [d["status"] for d in shop.deliveries(endpoint)] == ["delivered"],
            "the retried delivery delivered",
            timeout=20,
        )
        assert len(receiver.received) == before + 1
    finally:
        job.stop()


def test_recover_attempts_every_failed_delivery_again(
    live_ctx: Context, simulator: Simulator, receiver: Receiver, tmp_path: Path
) -> None:
    shop = Shop(live_ctx, simulator)
    job = started(live_ctx, tmp_path, "one")
    try:
        endpoint = fail_everything(shop, receiver, 4)
        receiver.status = 200
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
        answer = shop.client.post(
            f"/v1/webhook_endpoints/{endpoint.id}/recover",
            json={"since": since},
            headers=shop.merchant.headers,
        )
        assert (answer.status_code, answer.json) == (202, {"count": 4})
        eventually(
            lambda: [d["status"] for d in shop.deliveries(endpoint)] == ["delivered"] * 4,
            "every recovered delivery delivered",
            timeout=20,
        )
    finally:
        job.stop()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_retry_asked_of_one_replica_is_attempted_by_another(
    db_url: str, simulator: Simulator, receiver: Receiver, tmp_path: Path
) -> None:
    # Two processes' worth of state: the API answers on `front`, which sweeps nothing;
    # `back` sweeps and hears of the retry by NOTIFY only.
    front = bootstrap(live_settings(db_url, simulator))
    back = bootstrap(live_settings(db_url, simulator))
    shop = Shop(front, simulator)
    job = started(back, tmp_path, "back")
    try:
        endpoint = fail_everything(shop, receiver, 1)
        [delivery] = shop.deliveries(endpoint)
        receiver.status = 200
        answer = shop.client.post(
            f"/v1/webhook_endpoints/{endpoint.id}/deliveries/{delivery['id']}/retry",
            headers=shop.merchant.headers,
        )
        assert answer.status_code == 202
        eventually(
            lambda: [d["status"] for d in shop.deliveries(endpoint)] == ["delivered"],
            "the retried delivery delivered by the other replica",
            timeout=20,
        )
    finally:
        job.stop()
        front.close()
        back.close()
