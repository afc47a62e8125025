"""Refresh costs bounded gateway calls: none for a settled payment, one per throttle interval."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from support.app import MerchantAuth, register_payment
from support.clock import FakeClock
from support.simulator import Simulator

from reconciler.bootstrap import Context
from reconciler.domain.sync import REFRESH_MIN_INTERVAL_S
from reconciler.services.sweep import Sweeper


@pytest.fixture
def sweeper(ctx: Context) -> Iterator[Sweeper]:
    running = Sweeper(ctx)
    yield running
    running.close()


def fetches(simulator: Simulator, gid: str) -> int:
    calls = simulator.calls()
    # Calls about a payment the simulator does not know are kept apart, unattributed.
    mine = calls["payments"].get(gid) or [
        c for c in calls["unattributed"] if c.get("payment_id") == gid
    ]
    return sum(1 for call in mine if call["kind"] == "fetch")


def refresh(client: FlaskClient, merchant: MerchantAuth, pid: str) -> dict[str, object]:
    answer = client.post(f"/v1/payments/{pid}/refresh", headers=merchant.headers)
    assert answer.status_code == 202, answer.json
    note: dict[str, object] = answer.json["refresh"]
    return note


def test_refreshing_a_settled_payment_calls_no_gateway(
    client: FlaskClient,
    merchant: MerchantAuth,
    simulator: Simulator,
    sweeper: Sweeper,
    clock: FakeClock,
) -> None:
    gid = simulator.create(amount=1000, currency="EUR", reference="settled-refresh")["id"]
    pid = register_payment(client, merchant, gid)
    clock.advance(30)
    sweeper.sweep_once(clock.now)  # the simulator settles at once: this poll settles it
    assert client.get(f"/v1/payments/{pid}", headers=merchant.headers).json["sync"]["state"] == (
        "settled"
    )
    before = fetches(simulator, gid)

    for _ in range(50):
        assert refresh(client, merchant, pid) == {"outcome": "settled", "poll_at": None}
        sweeper.sweep_once(clock.now)
        clock.advance(0.2)

    assert fetches(simulator, gid) == before


def test_refreshes_poll_a_payment_once_per_throttle_interval(
    client: FlaskClient,
    merchant: MerchantAuth,
    simulator: Simulator,
    sweeper: Sweeper,
    clock: FakeClock,
) -> None:
    # Unknown to the gateway: every poll answers 404 and the payment waits for a person,
    # so each call seen here is one a refresh asked for.
    gid = "sim_pay_nobody_knows"
    pid = register_payment(client, merchant, gid)
    outcomes = []
    for _ in range(100):  # 100 refreshes over 10 s, a sweep after each
        outcomes.append(refresh(client, merchant, pid)["outcome"])
        sweeper.sweep_once(clock.now)
        clock.advance(REFRESH_MIN_INTERVAL_S / 100)

    assert outcomes[0] == "scheduled"
    assert outcomes.count("throttled") >= 98
    assert 1 <= fetches(simulator, gid) <= 2  # one at once, at most one more at the end
