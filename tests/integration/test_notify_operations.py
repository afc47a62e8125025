"""Operators and notifications: admin listings across merchants, pruning settled deliveries."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from support.app import make_settings
from support.clock import FakeClock
from support.receiver import Receiver, run_receiver
from support.shop import Shop, deliveries, events
from support.simulator import Simulator

from reconciler.bootstrap import Context, bootstrap
from reconciler.services.errors import ValidationFailed
from reconciler.services.retention import prune_notifications
from reconciler.services.sweep import Sweeper

TOKEN = "admin-test-token-that-is-long-enough"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def ops_ctx(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[Context]:
    settings = make_settings(db_url, simulator.url, notify_allow_private=1, admin_token=TOKEN)
    context = bootstrap(settings, clock=clock, rand=random.Random(2).random)
    yield context
    context.close()


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    with run_receiver() as good, run_receiver() as bad:
        yield good, bad


def test_operators_see_failing_and_disabled_endpoints_and_deliveries_across_merchants(
    ops_ctx: Context,
    simulator: Simulator,
    clock: FakeClock,
    receivers: tuple[Receiver, Receiver],
) -> None:
    good, bad = receivers
    bad.status = 500
    acme, globex = Shop(ops_ctx, simulator, "acme"), Shop(ops_ctx, simulator, "globex")
    healthy = acme.endpoint(good.url)
    failing = globex.endpoint(bad.url)
    with run_receiver() as gone_receiver:
        gone_receiver.status = 410
        gone = acme.endpoint(gone_receiver.url)
        for shop, reference in ((acme, "a1"), (globex, "g1")):
            _, gid = shop.payment(reference)
            shop.report(gid, "succeeded")
        sweeper = Sweeper(ops_ctx)
        try:
            sweeper.sweep_once(clock.now)
        finally:
            sweeper.close()
    client = acme.client

    assert client.get("/admin/webhook_endpoints").status_code == 401
    listed = client.get("/admin/webhook_endpoints", headers=ADMIN).json["data"]
    assert {e["id"] for e in listed} == {healthy.id, failing.id, gone.id}
    failing_now = client.get("/admin/webhook_endpoints?status=failing", headers=ADMIN).json
    [row] = failing_now["data"]
    assert row["id"] == failing.id
    assert row["merchant_id"] == globex.merchant.id
    assert row["pending_deliveries"] == 1
    assert row["failing_since"] is not None
    [off] = client.get("/admin/webhook_endpoints?status=disabled", headers=ADMIN).json["data"]
    assert off["id"] == gone.id
    assert "410" in off["disabled_reason"]
    assert off["failed_deliveries"] == 1

    everything = client.get("/admin/deliveries", headers=ADMIN).json["data"]
    assert {d["merchant_id"] for d in everything} == {acme.merchant.id, globex.merchant.id}
    [failed] = client.get("/admin/deliveries?status=failed", headers=ADMIN).json["data"]
    assert failed["endpoint_id"] == gone.id
    [stuck] = client.get(
        f"/admin/deliveries?status=pending&endpoint_id={failing.id}", headers=ADMIN
    ).json["data"]
    assert stuck["last_response_status"] == 500
    assert stuck["payment_id"]
    page = client.get("/admin/deliveries?limit=1", headers=ADMIN).json
    assert len(page["data"]) == 1
    rest = client.get(f"/admin/deliveries?limit=5&cursor={page['next_cursor']}", headers=ADMIN)
    assert len(rest.json["data"]) == len(everything) - 1


@pytest.mark.parametrize(
    "query",
    [
        "/admin/webhook_endpoints?status=broken",
        "/admin/webhook_endpoints?limit=0",
        "/admin/deliveries?status=lost",
        "/admin/deliveries?limit=many",
        "/admin/deliveries?cursor=not-ours",
    ],
)
def test_bad_admin_notification_queries_are_problems_not_errors(
    ops_ctx: Context, simulator: Simulator, query: str
) -> None:
    client = Shop(ops_ctx, simulator).client
    answer = client.get(query, headers=ADMIN)
    assert answer.status_code == 400
    assert answer.content_type == "application/problem+json"


def test_prune_deletes_settled_notifications_past_retention_and_keeps_the_rest(
    ops_ctx: Context,
    simulator: Simulator,
    clock: FakeClock,
    receivers: tuple[Receiver, Receiver],
) -> None:
    good, bad = receivers
    bad.status = 503
    shop = Shop(ops_ctx, simulator)
    shop.endpoint(good.url)
    shop.endpoint(bad.url)
    _, old = shop.payment("old")
    shop.report(old, "succeeded")
    sweeper = Sweeper(ops_ctx)
    try:
        sweeper.sweep_once(clock.now)  # delivered to the good one, pending at the bad one
        clock.advance(8 * 86400)
        _, recent = shop.payment("recent")
        shop.report(recent, "succeeded")
        [old_event] = [e for e in events(ops_ctx) if e.created_at < clock.now]

        with pytest.raises(ValidationFailed, match="at least 7 days"):
            prune_notifications(ops_ctx, 3)
        # The old event is still owed to the bad endpoint: only its delivered copy goes.
        assert prune_notifications(ops_ctx, 7) == (1, 0)
        assert old_event.id in {e.id for e in events(ops_ctx)}

        sweeper.sweep_once(clock.now)  # past its 3 days: the old delivery fails for good
        assert prune_notifications(ops_ctx, 7) == (1, 1)
    finally:
        sweeper.close()
    left = events(ops_ctx)
    assert old_event.id not in {e.id for e in left}
    assert len(left) == 1
    assert len(deliveries(ops_ctx)) == 2  # the recent event's, whatever their state
