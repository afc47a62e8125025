"""The outbox: events and deliveries written with the change; one attempt sent, decided, stored."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook
from support.app import MerchantAuth, make_settings, register_payment
from support.clock import FakeClock
from support.outbox import record_payment_event
from support.receiver import Receiver, run_receiver
from support.simulator import Simulator

from reconciler.adapters import repository
from reconciler.adapters.models import NotificationDelivery, NotificationEvent, WebhookEndpoint
from reconciler.adapters.notify.destinations import DestinationGuard, pinned_session
from reconciler.adapters.notify.sender import Sender
from reconciler.bootstrap import Context, bootstrap
from reconciler.entrypoints.schemas import payment_resource as payment_json
from reconciler.services.delivery import Deliveries
from reconciler.services.notifications import (
    disable_endpoint,
)
from reconciler.services.work import Done


@pytest.fixture
def ctx(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[Context]:
    settings = make_settings(db_url, simulator.url, notify_allow_private=1)
    context = bootstrap(settings, clock=clock, rand=random.Random(1).random)
    yield context
    context.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with run_receiver() as state:
        yield state


def endpoint(client: FlaskClient, merchant: MerchantAuth, url: str, **body: object) -> dict:
    response = client.post(
        "/v1/webhook_endpoints", json={"url": url, **body}, headers=merchant.headers
    )
    assert response.status_code == 201, response.json
    return response.json


def record(ctx: Context, payment_id: str, event_type: str) -> NotificationEvent:
    with ctx.sessions.begin() as session:
        payment = repository.payment_for_update(session, payment_id)
        assert payment is not None
        return record_payment_event(
            session,
            payment,
            event_type,
            now=ctx.clock(),
            resource=payment_json(payment),
            policy=ctx.settings.notify.policy,
        )


def deliveries(ctx: Context) -> list[NotificationDelivery]:
    with ctx.read() as session:
        return list(session.query(NotificationDelivery).order_by(NotificationDelivery.id))


def test_an_event_gets_one_due_delivery_per_enabled_matching_endpoint_of_its_merchant(
    client: FlaskClient, merchant: MerchantAuth, other_merchant: MerchantAuth, ctx: Context
) -> None:
    everything = endpoint(client, merchant, "http://127.0.0.1:9001/")
    successes = endpoint(client, merchant, "http://127.0.0.1:9002/", events=["payment.succeeded"])
    endpoint(client, merchant, "http://127.0.0.1:9003/", events=["payment.failed"])
    disabled = endpoint(client, merchant, "http://127.0.0.1:9004/")
    client.patch(
        f"/v1/webhook_endpoints/{disabled['id']}",
        json={"status": "disabled"},
        headers=merchant.headers,
    )
    deleted = endpoint(client, merchant, "http://127.0.0.1:9005/")
    client.delete(f"/v1/webhook_endpoints/{deleted['id']}", headers=merchant.headers)
    endpoint(client, other_merchant, "http://127.0.0.1:9006/")
    payment_id = register_payment(client, merchant, "sim_pay_outbox_1")

    event = record(ctx, payment_id, "payment.succeeded")

    made = deliveries(ctx)
    assert sorted(d.endpoint_id for d in made) == sorted([everything["id"], successes["id"]])
    assert all(d.event_id == event.id for d in made)
    assert all(
        (d.status, d.attempts, d.next_attempt_at) == ("pending", 0, ctx.clock()) for d in made
    )


def test_each_event_of_a_payment_carries_the_next_sequence_and_the_resource(
    client: FlaskClient, merchant: MerchantAuth, ctx: Context
) -> None:
    payment_id = register_payment(client, merchant, "sim_pay_outbox_2")
    resource = client.get(f"/v1/payments/{payment_id}", headers=merchant.headers).json
    first = record(ctx, payment_id, "payment.needs_review")
    second = record(ctx, payment_id, "payment.succeeded")
    assert (first.sequence, second.sequence) == (1, 2)
    assert second.payload == {
        "id": second.id,
        "type": "payment.succeeded",
        "created_at": "2026-11-28T10:00:00.000Z",
        "sequence": 2,
        "data": resource,
    }
    assert second.id.startswith("evt_")


def test_an_event_is_not_kept_when_its_transaction_rolls_back(
    client: FlaskClient, merchant: MerchantAuth, ctx: Context
) -> None:
    endpoint(client, merchant, "http://127.0.0.1:9001/")
    payment_id = register_payment(client, merchant, "sim_pay_outbox_3")
    with pytest.raises(RuntimeError), ctx.sessions.begin() as session:
        payment = repository.payment_for_update(session, payment_id)
        assert payment is not None
        record_payment_event(
            session,
            payment,
            "payment.failed",
            now=ctx.clock(),
            resource=payment_json(payment),
            policy=ctx.settings.notify.policy,
        )
        raise RuntimeError("the change failed")
    assert deliveries(ctx) == []
    with ctx.read() as session:
        assert session.query(NotificationEvent).count() == 0


def attempt(ctx: Context, sender: Sender, delivery_id: str) -> NotificationDelivery:
    """What the engine does for one due delivery: claim it, send, complete (decide, store)."""
    now = ctx.clock()
    kind = Deliveries(ctx, sender)
    with ctx.sessions.begin() as session:
        claimed = repository.claim_due(
            session,
            kind.queue,
            now=now,
            limit=10,
            owner="test",
            lease_until=now + timedelta(minutes=1),
        )
    [row] = [kind.row(c) for c in claimed if c.id == delivery_id]
    outcome = kind.call(row)
    with ctx.sessions.begin() as session:
        assert kind.complete(session, [Done(row=row, now=now, outcome=outcome)], "test") == [True]
    with ctx.read() as session:
        return session.get_one(NotificationDelivery, delivery_id)


def local_sender() -> Sender:
    return Sender(pinned_session(DestinationGuard(allow_private=True)), timeout_s=5)


def test_a_delivery_arrives_signed_and_is_marked_delivered(
    client: FlaskClient, merchant: MerchantAuth, ctx: Context, receiver: Receiver
) -> None:
    created = endpoint(client, merchant, receiver.url + "/hooks")
    payment_id = register_payment(client, merchant, "sim_pay_outbox_4")
    event = record(ctx, payment_id, "payment.succeeded")
    [delivery] = deliveries(ctx)

    stored = attempt(ctx, local_sender(), delivery.id)

    [got] = receiver.received
    body = Webhook(created["secret"]).verify(got.body, got.headers)
    assert body["id"] == event.id == got.headers["webhook-id"]
    assert (body["type"], body["sequence"], body["data"]["id"]) == (
        "payment.succeeded",
        1,
        payment_id,
    )
    assert (stored.status, stored.attempts, stored.last_response_status) == ("delivered", 1, 200)
    assert stored.delivered_at == ctx.clock()
    assert json.loads(got.body) == event.payload


def test_a_failed_attempt_keeps_the_webhook_id_and_is_rescheduled(
    client: FlaskClient, merchant: MerchantAuth, ctx: Context, receiver: Receiver, clock: FakeClock
) -> None:
    endpoint(client, merchant, receiver.url)
    record(ctx, register_payment(client, merchant, "sim_pay_outbox_5"), "payment.failed")
    [delivery] = deliveries(ctx)
    receiver.status = 500
    failed = attempt(ctx, local_sender(), delivery.id)
    assert (failed.status, failed.attempts, failed.last_error) == ("pending", 1, "HTTP 500")
    assert failed.next_attempt_at is not None and failed.next_attempt_at > clock()
    receiver.status = 200
    clock.advance(10)
    done = attempt(ctx, local_sender(), delivery.id)
    assert (done.status, done.attempts) == ("delivered", 2)
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1


def test_410_gone_fails_the_delivery_and_disables_the_endpoint_with_its_other_deliveries(
    client: FlaskClient, merchant: MerchantAuth, ctx: Context, receiver: Receiver
) -> None:
    created = endpoint(client, merchant, receiver.url)
    payment_id = register_payment(client, merchant, "sim_pay_outbox_6")
    record(ctx, payment_id, "payment.needs_review")
    record(ctx, payment_id, "payment.succeeded")
    first, second = deliveries(ctx)
    receiver.status = 410
    gone = attempt(ctx, local_sender(), first.id)
    assert (gone.status, gone.last_response_status) == ("failed", 410)
    with ctx.read() as session:
        row = session.get_one(WebhookEndpoint, created["id"])
        other = session.get_one(NotificationDelivery, second.id)
    assert (row.status, row.disabled_reason) == ("disabled", "the endpoint answered 410 Gone")
    assert (other.status, other.next_attempt_at) == ("failed", None)
    shown = client.get(f"/v1/webhook_endpoints/{created['id']}", headers=merchant.headers).json
    assert shown["disabled_reason"] == "the endpoint answered 410 Gone"


def wait_for_lock_waiter(ctx: Context) -> None:
    """Return once another session of this database is waiting for a row lock."""
    deadline = time.monotonic() + 30
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        with ctx.engine.connect() as conn:
            if conn.execute(query).scalar_one():
                return
        time.sleep(0.01)
    raise AssertionError("the event's transaction never waited for the endpoint's lock")


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_an_event_racing_a_disable_adds_no_delivery_to_the_disabled_endpoint(
    client: FlaskClient, merchant: MerchantAuth, ctx: Context
) -> None:
    created = endpoint(client, merchant, "http://127.0.0.1:9001/")
    payment_id = register_payment(client, merchant, "sim_pay_outbox_race")
    with ctx.sessions() as disabling, disabling.begin():
        disable_endpoint(
            disabling, created["id"], reason="disabled by the merchant", now=ctx.clock()
        )
        disabling.flush()
        with ThreadPoolExecutor(1) as pool:
            recorded = pool.submit(record, ctx, payment_id, "payment.succeeded")
            wait_for_lock_waiter(ctx)
            disabling.commit()
            recorded.result(timeout=30)
    assert deliveries(ctx) == []
