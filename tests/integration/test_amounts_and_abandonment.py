"""Amounts checked against the registered ones; another merchant's payment shows nothing;
checkouts nobody pays are canceled as abandoned (against a loopback Stripe)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from support.app import MerchantAuth, make_settings
from support.clock import FakeClock
from support.fakes.stripe_server import SECRET_KEY, WEBHOOK_SECRET, StripeFake
from werkzeug.test import TestResponse

from reconciler.adapters.models import NotificationEvent, Payment
from reconciler.bootstrap import Context, bootstrap
from reconciler.services.sweep import Sweeper


@pytest.fixture
def fake() -> Iterator[StripeFake]:
    server = StripeFake()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cancel_first() -> bool:
    return False


@pytest.fixture
def ctx(db_url: str, fake: StripeFake, clock: FakeClock, cancel_first: bool) -> Iterator[Context]:
    """The environment's Stripe account (`default`), abandoning after 6 s."""
    settings = make_settings(
        db_url,
        stripe_api_base=fake.url,
        stripe_api_key=SECRET_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_poll_abandon_after_s=6,
        stripe_cancel_abandoned=int(cancel_first),
    )
    context = bootstrap(settings, clock=clock, rand=random.Random(3).random)
    yield context
    context.close()


def post_payment(
    client: FlaskClient,
    merchant: MerchantAuth,
    intent_id: str,
    amount: int,
    currency: str,
    reference: str | None = None,
) -> TestResponse:
    return client.post(
        "/v1/payments",
        json={
            "merchant_reference": reference or f"order-{intent_id}",
            "gateway": "stripe",
            "amount": amount,
            "currency": currency,
            "gateway_payment_id": intent_id,
        },
        headers=merchant.headers,
    )


def register(
    client: FlaskClient, merchant: MerchantAuth, intent_id: str, amount: int, currency: str
) -> dict[str, Any]:
    response = post_payment(client, merchant, intent_id, amount, currency)
    assert response.status_code == 201, response.json
    payment: dict[str, Any] = response.json
    return payment


def deliver(client: FlaskClient, fake: StripeFake, intent_id: str, clock: FakeClock) -> None:
    now = int(clock.now.timestamp())
    event = fake.event("payment_intent.succeeded", intent_id, created=now)
    headers, body = fake.signed(event, timestamp=now)
    assert client.post("/webhooks/stripe", data=body, headers=headers).status_code == 200


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def sweep(ctx: Context) -> None:
    sweeper = Sweeper(ctx)
    try:
        sweeper.sweep_once()
    finally:
        sweeper.close()


def shown(client: FlaskClient, merchant: MerchantAuth, payment_id: str) -> dict[str, Any]:
    payment: dict[str, Any] = client.get(
        f"/v1/payments/{payment_id}", headers=merchant.headers
    ).json
    return payment


def notified(ctx: Context, payment_id: str) -> list[str]:
    with ctx.read() as session:
        rows = session.query(NotificationEvent).filter_by(payment_id=payment_id).all()
        return [row.type for row in sorted(rows, key=lambda r: r.sequence)]


def test_a_capture_of_1_inr_on_a_250000_inr_payment_is_flagged_not_settled(
    fake: StripeFake, ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    intent = fake.add_intent(amount=100, currency="inr", status="processing")
    payment = register(client, merchant, intent["id"], 25_000_000, "INR")
    fake.set_status(intent["id"], "succeeded")
    deliver(client, fake, intent["id"], clock)
    after = shown(client, merchant, payment["id"])
    assert (after["status"], after["sync"]["state"]) == ("pending", "needs_review")
    assert after["sync"]["last_error"] == ("the gateway reports 1.00 INR; registered 250000.00 INR")
    events = client.get(f"/v1/payments/{payment['id']}/events", headers=merchant.headers)
    assert events.json["data"][-1]["outcome"] == "amount_mismatch"
    assert notified(ctx, payment["id"]) == ["payment.needs_review"]


def test_a_partial_capture_found_by_a_poll_is_flagged(
    fake: StripeFake, ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    intent = fake.add_intent(amount=5000, currency="usd", status="processing")
    payment = register(client, merchant, intent["id"], 5000, "USD")
    fake.set_status(intent["id"], "succeeded")
    fake.intents[intent["id"]]["amount_received"] = 4000
    clock.advance(7)
    sweep(ctx)
    after = shown(client, merchant, payment["id"])
    assert (after["status"], after["sync"]["state"]) == ("pending", "needs_review")
    assert after["sync"]["last_error"] == "the gateway reports 40.00 USD; registered 50.00 USD"


def test_a_matching_capture_settles(
    fake: StripeFake, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    intent = fake.add_intent(amount=4990, currency="usd", status="processing")
    payment = register(client, merchant, intent["id"], 4990, "USD")
    fake.set_status(intent["id"], "succeeded")
    deliver(client, fake, intent["id"], clock)
    after = shown(client, merchant, payment["id"])
    assert (after["status"], after["sync"]["state"]) == ("succeeded", "settled")


def views(
    client: FlaskClient, merchant: MerchantAuth, payment_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The payment and its timeline, as the merchant reads them."""
    events = client.get(f"/v1/payments/{payment_id}/events", headers=merchant.headers).json
    return shown(client, merchant, payment_id), events


def seen_by(client: FlaskClient, merchant: MerchantAuth, payment_id: str) -> dict[str, Any]:
    """What a merchant can learn of its payment, without what differs by construction."""
    payment, events = views(client, merchant, payment_id)
    return {
        "status": payment["status"],
        "cancel_reason": payment["cancel_reason"],
        "sync": {k: payment["sync"][k] for k in ("state", "last_error", "poll_attempts")},
        "events": [(e["source"], e["outcome"], e["to_status"]) for e in events["data"]],
    }


def alike(
    client: FlaskClient, merchant: MerchantAuth, payment_id: str, unknown_id: str
) -> dict[str, Any]:
    """Check the merchant learns of a payment what it learns of an unknown id; return it."""
    seen = seen_by(client, merchant, payment_id)
    assert seen == seen_by(client, merchant, unknown_id)
    return seen


def leaks(client: FlaskClient, merchant: MerchantAuth, payment_id: str) -> str:
    return repr(views(client, merchant, payment_id))


def test_another_merchants_tagged_payment_shows_what_an_unknown_id_shows(
    fake: StripeFake,
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    other_merchant: MerchantAuth,
    clock: FakeClock,
) -> None:
    # Created through the service for `merchant`: the intent carries its tag.
    created = client.post(
        "/v1/payments",
        json={"merchant_reference": "mine", "gateway": "stripe", "amount": 777, "currency": "USD"},
        headers=merchant.headers,
    )
    assert created.status_code == 201, created.json
    intent_id = created.json["gateway_payment_id"]
    assert fake.intents[intent_id]["metadata"]["reconciler_merchant"] == merchant.id
    # A webhook for an intent tagged for `merchant`, before anyone tracks it:
    tagged = fake.add_intent(
        amount=250, status="processing", metadata={"reconciler_merchant": merchant.id}
    )
    fake.set_status(tagged["id"], "succeeded")
    deliver(client, fake, tagged["id"], clock)
    # `other_merchant` registers it, and an id Stripe never issued, claiming another amount.
    theirs = register(client, other_merchant, tagged["id"], 100, "USD")
    unknown = register(client, other_merchant, "pi_never_issued", 100, "USD")
    alike(client, other_merchant, theirs["id"], unknown["id"])
    clock.advance(3600)
    sweep(ctx)
    after = alike(client, other_merchant, theirs["id"], unknown["id"])
    assert (after["status"], after["sync"]["state"]) == ("pending", "needs_review")
    assert after["sync"]["last_error"] == "the gateway does not know this payment"
    text = leaks(client, other_merchant, theirs["id"])
    for secret in ("2.50", "250", merchant.id, "succeeded", "evt_"):
        assert secret not in text


def test_a_payment_another_merchant_tracks_answers_as_an_unknown_id_does(
    fake: StripeFake,
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    other_merchant: MerchantAuth,
    clock: FakeClock,
) -> None:
    """The issue's attack, on an intent made outside the service (no tag): no 409 oracle."""
    intent = fake.add_intent(amount=25_000, currency="usd", status="processing")
    owners = register(client, merchant, intent["id"], 25_000, "USD")
    fake.set_status(intent["id"], "succeeded")
    deliver(client, fake, intent["id"], clock)
    # Another merchant names it as 1 USD, beside an id nobody ever issued.
    theirs = register(client, other_merchant, intent["id"], 100, "USD")
    unknown = register(client, other_merchant, "pi_never_issued", 100, "USD")
    assert theirs["gateway_payment_id"] == intent["id"]
    assert theirs.keys() == unknown.keys()
    alike(client, other_merchant, theirs["id"], unknown["id"])
    # Webhooks after it apply to the owner's row only.
    deliver(client, fake, intent["id"], clock)
    alike(client, other_merchant, theirs["id"], unknown["id"])
    # Polled like any row, told what an unknown id is told; nobody's status moves.
    clock.advance(3600)
    sweep(ctx)
    shadow = alike(client, other_merchant, theirs["id"], unknown["id"])
    assert (shadow["status"], shadow["sync"]["state"]) == ("pending", "needs_review")
    assert notified(ctx, theirs["id"]) == notified(ctx, unknown["id"])
    text = leaks(client, other_merchant, theirs["id"])
    for secret in ("250.00", "25000", merchant.id, owners["id"], "succeeded", "evt_"):
        assert secret not in text
    # A refresh answers alike too.
    refreshes = [
        client.post(f"/v1/payments/{pid}/refresh", headers=other_merchant.headers)
        for pid in (theirs["id"], unknown["id"])
    ]
    assert refreshes[0].status_code == refreshes[1].status_code
    # The owner's payment is untouched, and its own registrations answer as before.
    owner_view = shown(client, merchant, owners["id"])
    assert (owner_view["status"], owner_view["sync"]["state"]) == ("succeeded", "settled")
    assert notified(ctx, owners["id"]) == ["payment.succeeded"]
    replay = post_payment(client, merchant, intent["id"], 25_000, "USD")
    assert (replay.status_code, replay.json["id"]) == (200, owners["id"])
    again = post_payment(client, merchant, intent["id"], 25_000, "USD", "another-reference")
    assert again.status_code == 409  # its own row: nothing of anyone else's is told
    assert "already tracked" in again.json["detail"]


def test_the_merchant_a_tag_names_takes_its_payment_over_from_who_named_it_first(
    fake: StripeFake,
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    other_merchant: MerchantAuth,
    clock: FakeClock,
) -> None:
    """A payment made elsewhere but tagged by its merchant: a guess that came first loses."""
    intent = fake.add_intent(
        amount=4990, status="processing", metadata={"reconciler_merchant": merchant.id}
    )
    guess = register(client, other_merchant, intent["id"], 4990, "USD")
    owners = register(client, merchant, intent["id"], 4990, "USD")  # a shadow, for now
    fake.set_status(intent["id"], "succeeded")
    clock.advance(3600)
    sweep(ctx)  # both polled in one batch: the tag decides
    owner_view = shown(client, merchant, owners["id"])
    assert (owner_view["status"], owner_view["sync"]["state"]) == ("succeeded", "settled")
    guessed = shown(client, other_merchant, guess["id"])
    assert (guessed["status"], guessed["sync"]["state"]) == ("pending", "needs_review")
    assert guessed["sync"]["last_error"] == "the gateway does not know this payment"
    with ctx.read() as session:
        shadows = {
            row.id: row.shadow
            for row in session.query(Payment).filter(Payment.id.in_([guess["id"], owners["id"]]))
        }
    assert shadows == {guess["id"]: True, owners["id"]: False}
    # From now on its webhooks go to the merchant the tag names.
    deliver(client, fake, intent["id"], clock)
    events = client.get(f"/v1/payments/{owners['id']}/events", headers=merchant.headers)
    assert events.json["data"][-1]["source"] == "webhook"
    assert "evt_" not in leaks(client, other_merchant, guess["id"])


@pytest.mark.parametrize("cancel_first", [False, True], ids=["local", "canceled-at-stripe"])
def test_an_unpaid_intent_is_abandoned_not_given_up(
    fake: StripeFake,
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    clock: FakeClock,
    cancel_first: bool,
) -> None:
    intent = fake.add_intent(amount=4990, status="requires_payment_method")
    payment = register(client, merchant, intent["id"], 4990, "USD")
    # The first poll is due when the payment is to be abandoned (6 s), not a grace later.
    assert instant(payment["sync"]["next_poll_at"]) == instant(payment["created_at"]) + timedelta(
        seconds=6
    )
    clock.advance(6)
    sweep(ctx)
    after = shown(client, merchant, payment["id"])
    assert (after["status"], after["cancel_reason"]) == ("canceled", "abandoned")
    assert after["sync"]["state"] == "settled"
    assert notified(ctx, payment["id"]) == ["payment.canceled"]
    canceled_at_stripe = fake.calls("POST", f"/v1/payment_intents/{intent['id']}/cancel")
    assert canceled_at_stripe == (1 if cancel_first else 0)
    if cancel_first:
        assert fake.intents[intent["id"]]["cancellation_reason"] == "abandoned"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'reconciler_payments_abandoned_total{gateway="stripe"} 1.0' in metrics


def test_a_capture_after_abandonment_follows_the_captured_money_rule(
    fake: StripeFake, ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    intent = fake.add_intent(amount=4990, status="requires_payment_method")
    payment = register(client, merchant, intent["id"], 4990, "USD")
    clock.advance(7)
    sweep(ctx)
    assert shown(client, merchant, payment["id"])["cancel_reason"] == "abandoned"
    fake.set_status(intent["id"], "succeeded")
    deliver(client, fake, intent["id"], clock)
    after = shown(client, merchant, payment["id"])
    assert (after["status"], after["sync"]["state"]) == ("succeeded", "needs_review")


def test_a_payment_the_gateway_is_processing_is_not_abandoned(
    fake: StripeFake, ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    intent = fake.add_intent(amount=4990, status="processing")
    payment = register(client, merchant, intent["id"], 4990, "USD")
    clock.advance(7)
    sweep(ctx)
    after = shown(client, merchant, payment["id"])
    assert (after["status"], after["cancel_reason"]) == ("pending", None)
    assert after["sync"]["state"] == "polling"


def test_notifications_render_the_resource_as_the_api_shows_it(
    fake: StripeFake, ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    intent = fake.add_intent(amount=4990, status="requires_payment_method")
    payment = register(client, merchant, intent["id"], 4990, "USD")
    clock.advance(7)
    sweep(ctx)
    with ctx.read() as session:
        event = session.query(NotificationEvent).filter_by(payment_id=payment["id"]).one()
        sent = event.payload["data"]
    assert sent == shown(client, merchant, payment["id"])
    assert (sent["gateway_account"], sent["cancel_reason"]) == ("default", "abandoned")
