"""Replays: a signed body seen before is a duplicate, whatever its event id; old news is stale."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from support.clock import FakeClock
from support.edge import TRACKED, edge_app, edge_context, post, signed

from reconciler.adapters.models import Payment
from reconciler.bootstrap import Context


@pytest.fixture
def edge(db_url: str, clock: FakeClock) -> Iterator[tuple[Context, Flask]]:
    with edge_context(db_url, clock) as ctx:
        app, _ = edge_app(ctx)
        yield ctx, app


def razorpay_body(event: str, status: str, created_at: int) -> bytes:
    entity = {"id": TRACKED["razorpay"], "entity": "payment", "status": status}
    return json.dumps(
        {
            "entity": "event",
            "event": event,
            "created_at": created_at,
            "payload": {"payment": {"entity": entity}},
        }
    ).encode()


def body_for(gateway: str, clock: FakeClock) -> bytes:
    at = int(clock.now.timestamp()) - 60
    if gateway == "razorpay":
        return razorpay_body("payment.authorized", "authorized", at)
    if gateway == "stripe":
        intent = {"id": TRACKED["stripe"], "object": "payment_intent", "status": "processing"}
        event = {"id": "evt_r1", "object": "event", "type": "payment_intent.processing"}
        return json.dumps({**event, "created": at, "data": {"object": intent}}).encode()
    data = {"id": TRACKED["simulator"], "status": "processing", "updated_at": clock.now.isoformat()}
    return json.dumps({"type": "payment.processing", "data": data}).encode()


def deliver(app: Flask, clock: FakeClock, gateway: str, body: bytes, event_id: str) -> Any:
    headers = signed(gateway, body, int(clock.now.timestamp()), event_id)
    response = post(app.test_client(), gateway, body, headers)
    assert response.status_code == 200, response.json
    return response.json


def payment(ctx: Context, gateway: str) -> Payment:
    with ctx.read() as session:
        return session.query(Payment).filter_by(gateway=gateway).one()


@pytest.mark.parametrize("gateway", sorted(TRACKED))
def test_the_same_signed_body_under_a_new_event_id_is_a_duplicate(
    edge: tuple[Context, Flask], clock: FakeClock, gateway: str
) -> None:
    ctx, app = edge
    body = body_for(gateway, clock)
    assert deliver(app, clock, gateway, body, "evt-first")["result"] == "applied"
    clock.advance(5)
    again = deliver(app, clock, gateway, body, "evt-replayed")
    assert again["result"] == "duplicate"


def test_a_replayed_razorpay_authorization_after_capture_changes_nothing(
    edge: tuple[Context, Flask], clock: FakeClock
) -> None:
    ctx, app = edge
    t0 = int(clock.now.timestamp())
    authorized = razorpay_body("payment.authorized", "authorized", t0 - 120)
    deliver(app, clock, "razorpay", authorized, "evt_a")
    deliver(app, clock, "razorpay", razorpay_body("payment.captured", "captured", t0 - 60), "evt_c")
    clock.advance(30)
    replay = deliver(app, clock, "razorpay", authorized, "evt_a_again")
    assert replay["result"] == "duplicate"
    row = payment(ctx, "razorpay")
    assert (row.status, row.sync_state, row.gateway_status) == ("succeeded", "settled", "captured")


def test_a_failure_older_than_the_applied_capture_is_stale_not_a_conflict(
    edge: tuple[Context, Flask], clock: FakeClock
) -> None:
    ctx, app = edge
    t0 = int(clock.now.timestamp())
    deliver(app, clock, "razorpay", razorpay_body("payment.captured", "captured", t0 - 60), "c")
    month_old = razorpay_body("payment.failed", "failed", t0 - 30 * 86400)
    assert deliver(app, clock, "razorpay", month_old, "f")["outcome"] == "stale"
    assert payment(ctx, "razorpay").sync_state == "settled"


def test_repeated_identical_non_terminal_reports_do_not_push_the_poll_back_again(
    edge: tuple[Context, Flask], clock: FakeClock
) -> None:
    ctx, app = edge
    t0 = int(clock.now.timestamp())
    deliver(app, clock, "razorpay", razorpay_body("payment.authorized", "authorized", t0), "a1")
    first = payment(ctx, "razorpay").next_poll_at
    for n in range(1, 6):
        clock.advance(20)
        at = t0 + 20 * n
        deliver(
            app,
            clock,
            "razorpay",
            razorpay_body("payment.authorized", "authorized", at),
            f"a{n + 1}",
        )
    # The gateway said nothing new: the poll stays where the first report put it.
    assert payment(ctx, "razorpay").next_poll_at == first
