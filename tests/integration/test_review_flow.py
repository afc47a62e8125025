"""The review flow closes: a report settles and resolves, unknown payments settle in one step,
each reason says what it means, many payments are handled at once."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from support.app import MerchantAuth, make_settings, register_payment
from support.clock import FakeClock
from support.simulator import Simulator

from reconciler.bootstrap import Context, bootstrap
from reconciler.entrypoints.app import create_app
from reconciler.services.merchants import create_merchant
from reconciler.services.sweep import Sweeper

TOKEN = "review-flow-admin-token-long-enough"  # test-only
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def service(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[Context]:
    ctx = bootstrap(
        make_settings(db_url, simulator.url, admin_token=TOKEN),
        clock=clock,
        rand=random.Random(5).random,
    )
    yield ctx
    ctx.close()


@pytest.fixture
def client(service: Context) -> FlaskClient:
    return create_app(ctx=service).test_client()


@pytest.fixture
def shop(service: Context) -> MerchantAuth:
    record, key = create_merchant(service, "acme")
    return MerchantAuth(record.id, key)


def unknown_payments(
    service: Context, client: FlaskClient, shop: MerchantAuth, clock: FakeClock, n: int
) -> list[str]:
    """Register payments the simulator never heard of; one sweep flags them for review."""
    ids = [register_payment(client, shop, f"sim_pay_nobody_{i}") for i in range(n)]
    clock.advance(31)
    sweeper = Sweeper(service)
    try:
        sweeper.sweep_once(clock.now)
    finally:
        sweeper.close()
    for pid in ids:
        assert payment(client, pid)["sync"]["state"] == "needs_review"
        assert payment(client, pid)["review_reason"] == "the gateway does not know this payment"
    return ids


def payment(client: FlaskClient, pid: str) -> dict[str, object]:
    answer: dict[str, object] = client.get(f"/admin/payments/{pid}", headers=ADMIN).json
    return answer


def test_reporting_canceled_settles_an_unknown_payment_and_closes_its_review(
    service: Context, client: FlaskClient, shop: MerchantAuth, clock: FakeClock
) -> None:
    [pid] = unknown_payments(service, client, shop, clock, 1)

    done = client.post(
        f"/admin/payments/{pid}/report",
        json={"status": "canceled", "note": "never created at the gateway"},
        headers=ADMIN,
    )

    assert done.status_code == 200
    assert (done.json["outcome"], done.json["resolved"]) == ("applied", True)
    assert done.json["payment"]["status"] == "canceled"
    assert done.json["payment"]["sync"]["state"] == "settled"
    assert done.json["payment"]["sync"]["next_poll_at"] is None  # nothing re-flags it
    events = client.get(f"/admin/payments/{pid}/events", headers=ADMIN).json["data"]
    assert [e["outcome"] for e in events][-2:] == ["applied", "resolved"]
    assert events[-1]["detail"]["review_code"] == "unknown_to_gateway"


def test_an_operator_may_keep_the_review_open_after_a_terminal_report(
    service: Context, client: FlaskClient, shop: MerchantAuth, clock: FakeClock
) -> None:
    [pid] = unknown_payments(service, client, shop, clock, 1)

    done = client.post(
        f"/admin/payments/{pid}/report",
        json={"status": "failed", "note": "support thinks so", "resolve": False},
        headers=ADMIN,
    )

    assert done.json["resolved"] is False
    assert done.json["payment"]["sync"]["state"] == "needs_review"


def test_resolving_a_pending_unknown_payment_is_refused_with_the_actions_that_close_it(
    service: Context, client: FlaskClient, shop: MerchantAuth, clock: FakeClock
) -> None:
    [pid] = unknown_payments(service, client, shop, clock, 1)

    refused = client.post(f"/admin/payments/{pid}/resolve", json={"note": "x"}, headers=ADMIN)

    assert refused.status_code == 409
    assert refused.content_type == "application/problem+json"
    assert "Settle it as canceled or failed" in refused.json["detail"]
    assert payment(client, pid)["sync"]["state"] == "needs_review"


def test_the_admin_timeline_needs_the_admin_token_and_names_unknown_payments(
    client: FlaskClient,
) -> None:
    assert client.get("/admin/payments/pay_nope/events").status_code == 401
    missing = client.get("/admin/payments/pay_nope/events", headers=ADMIN)
    assert missing.status_code == 404
    assert missing.content_type == "application/problem+json"


def test_bulk_settles_many_and_names_each_refusal(
    service: Context, client: FlaskClient, shop: MerchantAuth, clock: FakeClock
) -> None:
    ids = unknown_payments(service, client, shop, clock, 3)
    settled_already = register_payment(client, shop, "sim_pay_other")
    client.post(
        f"/admin/payments/{settled_already}/report",
        json={"status": "succeeded", "note": "captured"},
        headers=ADMIN,
    )

    done = client.post(
        "/admin/payments/bulk",
        json={"action": "cancel", "payment_ids": [*ids, settled_already], "note": "never made"},
        headers=ADMIN,
    )

    assert done.status_code == 200
    assert done.json["done"] == ids
    [refusal] = done.json["refused"]
    assert refusal["id"] == settled_already
    assert "kept succeeded" in refusal["detail"]
    assert {payment(client, pid)["status"] for pid in ids} == {"canceled"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "explode", "payment_ids": ["pay_x"], "note": "n"}, "action"),
        ({"action": "refresh", "payment_ids": [], "note": "n"}, "payment_ids"),
        ({"action": "refresh", "payment_ids": ["pay\u0000"], "note": "n"}, "payment_ids.0"),
        ({"action": "refresh", "payment_ids": ["p"] * 101, "note": "n"}, "payment_ids"),
        ({"action": "resolve", "payment_ids": ["pay_x"]}, "note"),
    ],
)
def test_bad_bulk_requests_are_problems_naming_the_field(
    client: FlaskClient, body: dict[str, object], field: str
) -> None:
    refused = client.post("/admin/payments/bulk", json=body, headers=ADMIN)

    assert refused.status_code == 400
    assert refused.content_type == "application/problem+json"
    assert field in [e["field"] for e in refused.json["errors"]]


# --- On the page ------------------------------------------------------------------------


def signed_in(client: FlaskClient) -> str:
    assert client.post("/admin/ui/sign-in", data={"token": TOKEN}).status_code == 303
    page = client.get("/admin/ui/review").get_data(as_text=True)
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def test_the_page_explains_an_unknown_payment_and_settles_it_in_one_step(
    service: Context, client: FlaskClient, shop: MerchantAuth, clock: FakeClock
) -> None:
    [pid] = unknown_payments(service, client, shop, clock, 1)
    csrf = signed_in(client)

    page = client.get(f"/admin/ui/payments/{pid}").get_data(as_text=True)
    assert "The gateway answers that it does not know this payment" in page
    assert 'data-testid="settle"' in page
    assert f'action="/admin/ui/payments/{pid}/resolve"' not in page  # it would be re-flagged

    done = client.post(
        f"/admin/ui/payments/{pid}/report",
        data={"csrf_token": csrf, "status": "canceled", "note": "never created"},
    )

    assert done.status_code == 303
    assert done.headers["Location"].endswith(
        f"/admin/ui/payments/{pid}?msg=reported_resolved&id={pid}&outcome=applied"
    )
    shown = client.get(done.headers["Location"]).get_data(as_text=True)
    assert f"Done: the report on {pid} was recorded (applied) and its review resolved." in shown
    assert payment(client, pid)["sync"]["state"] == "settled"


def test_the_review_page_settles_the_selected_payments_at_once(
    service: Context, client: FlaskClient, shop: MerchantAuth, clock: FakeClock
) -> None:
    ids = unknown_payments(service, client, shop, clock, 2)
    csrf = signed_in(client)
    page = client.get("/admin/ui/review").get_data(as_text=True)
    assert all(f'name="payment_id" value="{pid}"' in page for pid in ids)

    done = client.post(
        "/admin/ui/review/bulk",
        data={"csrf_token": csrf, "action": "fail", "note": "gateway support", "payment_id": ids},
    )

    assert done.status_code == 200
    assert "2 done, 0 refused." in done.get_data(as_text=True)
    assert {payment(client, pid)["status"] for pid in ids} == {"failed"}
    assert "Nothing needs a human right now." in client.get("/admin/ui/review").get_data(
        as_text=True
    )
