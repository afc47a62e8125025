"""`POST /webhooks/simulator`: verify, store, apply once, in any order."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.app import SIM_SECRET, MerchantAuth, register_payment
from support.clock import FakeClock

from reconciler.adapters.models import Payment, PaymentEvent, WebhookInbox
from reconciler.bootstrap import Context


def sign(msg_id: str, timestamp: int, body: bytes, secret: str = SIM_SECRET) -> str:
    """Standard Webhooks, computed here independently of the adapter."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def event(gid: str, status: str, at: datetime) -> bytes:
    stamp = at.isoformat().replace("+00:00", "Z")
    data = {"id": gid, "status": status, "amount": 1000, "currency": "EUR", "updated_at": stamp}
    return json.dumps({"type": f"payment.{status}", "timestamp": stamp, "data": data}).encode()


def deliver(
    client: FlaskClient,
    clock: FakeClock,
    msg_id: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    secret: str = SIM_SECRET,
) -> Any:
    ts = int(clock.now.timestamp()) if timestamp is None else timestamp
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(msg_id, ts, body, secret),
        "Content-Type": "application/json",
    }
    return client.post("/webhooks/simulator", data=body, headers=headers)


def register(client: FlaskClient, merchant: MerchantAuth, gid: str) -> str:
    return register_payment(client, merchant, gid)


def row(ctx: Context, payment_id: str) -> Payment:
    with ctx.sessions() as session:
        return session.get_one(Payment, payment_id)


def counts(ctx: Context) -> tuple[int, int, int]:
    with ctx.sessions() as session:
        return (
            session.query(Payment).count(),
            session.query(PaymentEvent).count(),
            session.query(WebhookInbox).count(),
        )


def test_a_signed_terminal_webhook_settles_the_payment_and_clears_its_schedule(
    ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    pid = register(client, merchant, "sim_pay_a")
    response = deliver(client, clock, "msg_1", event("sim_pay_a", "succeeded", clock.now))
    assert response.status_code == 200
    assert response.json["result"] == "applied"
    payment = row(ctx, pid)
    assert (payment.status, payment.status_source, payment.sync_state) == (
        "succeeded",
        "webhook",
        "settled",
    )
    assert payment.next_poll_at is None


def test_a_non_terminal_webhook_pushes_the_next_poll_back(
    ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    pid = register(client, merchant, "sim_pay_b")
    clock.advance(25)
    deliver(client, clock, "msg_2", event("sim_pay_b", "requires_action", clock.now))
    payment = row(ctx, pid)
    assert payment.status == "pending"
    assert payment.gateway_status == "requires_action"
    assert payment.next_poll_at == clock.now + timedelta(seconds=30)


def test_a_duplicate_delivery_is_200_and_changes_nothing_but_the_timeline(
    ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    pid = register(client, merchant, "sim_pay_c")
    body = event("sim_pay_c", "failed", clock.now)
    assert deliver(client, clock, "msg_3", body).json["result"] == "applied"
    before = row(ctx, pid)
    again = deliver(client, clock, "msg_3", body)
    assert again.status_code == 200
    assert again.json["result"] == "duplicate"
    after = row(ctx, pid)
    assert (after.status, after.version) == (before.status, before.version)
    timeline = client.get(f"/v1/payments/{pid}/events", headers=merchant.headers).json["data"]
    assert [e["outcome"] for e in timeline] == ["registered", "applied", "duplicate"]


def test_a_storm_of_fifty_concurrent_duplicates_applies_once(
    ctx: Context, app: Flask, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    pid = register(client, merchant, "sim_pay_d")
    body = event("sim_pay_d", "succeeded", clock.now)
    answers: list[int] = []
    barrier = threading.Barrier(50)

    def hit() -> None:
        local = app.test_client()
        barrier.wait()
        answers.append(deliver(local, clock, "msg_storm", body).status_code)

    threads = [threading.Thread(target=hit) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 50
    timeline = client.get(f"/v1/payments/{pid}/events", headers=merchant.headers).json["data"]
    outcomes = [e["outcome"] for e in timeline]
    assert outcomes.count("applied") == 1
    assert outcomes.count("duplicate") == 49
    assert counts(ctx)[2] == 1


SEQUENCE = [("processing", 1), ("requires_action", 2), ("succeeded", 3)]


def test_every_order_of_a_small_event_sequence_ends_in_the_same_state(
    ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    finals = set()
    for n, order in enumerate(itertools.permutations(SEQUENCE)):
        gid = f"sim_pay_perm_{n}"
        pid = register(client, merchant, gid)
        for status, second in order:
            at = clock.now + timedelta(seconds=second)
            assert (
                deliver(client, clock, f"{gid}_{status}", event(gid, status, at)).status_code == 200
            )
        payment = row(ctx, pid)
        finals.add((payment.status, payment.gateway_status, payment.sync_state))
    assert finals == {("succeeded", "succeeded", "settled")}


def test_a_late_success_after_failure_wins_and_is_flagged_for_review(
    ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    pid = register(client, merchant, "sim_pay_late")
    deliver(client, clock, "m_fail", event("sim_pay_late", "failed", clock.now))
    deliver(client, clock, "m_ok", event("sim_pay_late", "succeeded", clock.now))
    payment = row(ctx, pid)
    assert (payment.status, payment.sync_state) == ("succeeded", "needs_review")
    assert payment.review_reason


def test_an_event_for_an_unregistered_payment_is_kept_and_applied_at_registration(
    ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    response = deliver(client, clock, "m_orphan", event("sim_pay_later", "canceled", clock.now))
    assert response.status_code == 200
    assert response.json["result"] == "orphan"
    pid = register(client, merchant, "sim_pay_later")
    payment = row(ctx, pid)
    assert payment.status == "canceled"
    timeline = client.get(f"/v1/payments/{pid}/events", headers=merchant.headers).json["data"]
    assert [(e["source"], e["gateway_event_id"]) for e in timeline] == [
        ("api", None),  # the registration, with its first poll's delay
        ("webhook", "m_orphan"),
    ]


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda h, b: ({**h, "webhook-signature": "v1,AAAA"}, b), 401),
        (lambda h, b: (h, b.replace(b"succeeded", b"failed")), 401),  # body changed after signing
        (lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) - 301)}, b), 401),
        (lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 301)}, b), 401),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), 400),
        (lambda h, b: ({**h, "webhook-timestamp": "yesterday"}, b), 400),
        (lambda h, b: ({**h, "webhook-signature": "garbage"}, b), 400),
    ],
)
def test_bad_signatures_and_headers_are_refused_and_change_nothing(
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    clock: FakeClock,
    mutate: Any,
    status: int,
) -> None:
    register(client, merchant, "sim_pay_e")
    body = event("sim_pay_e", "succeeded", clock.now)
    ts = int(clock.now.timestamp())
    headers = {
        "webhook-id": "m_e",
        "webhook-timestamp": str(ts),
        "webhook-signature": sign("m_e", ts, body),
    }
    before = counts(ctx)
    bad_headers, bad_body = mutate(headers, body)
    # A tampered timestamp must be re-signed to test the tolerance rather than the MAC.
    if (
        bad_headers.get("webhook-timestamp", "").lstrip("-").isdigit()
        and bad_headers is not headers
    ):
        new_ts = int(bad_headers["webhook-timestamp"])
        if new_ts != ts:
            bad_headers["webhook-signature"] = sign("m_e", new_ts, bad_body)
    response = client.post("/webhooks/simulator", data=bad_body, headers=bad_headers)
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    assert counts(ctx) == before


def test_a_signature_made_with_an_unknown_secret_is_401(
    ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    register(client, merchant, "sim_pay_rot")
    wrong = "whsec_" + base64.b64encode(b"some-other-secret").decode()
    assert (
        deliver(
            client, clock, "m_r1", event("sim_pay_rot", "succeeded", clock.now), secret=wrong
        ).status_code
        == 401
    )


def test_unknown_gateway_is_404_and_big_bodies_413(client: FlaskClient) -> None:
    assert client.post("/webhooks/paypal", data=b"{}").status_code == 404
    assert client.post("/webhooks/stripe", data=b"{}").status_code == 404  # not configured here
    response = client.post("/webhooks/simulator", data=b"x" * 70_000)
    assert response.status_code == 413
    assert response.content_type == "application/problem+json"


header_values = st.one_of(st.none(), st.text(max_size=60), st.integers().map(str))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda d: json.dumps(d).encode(),
            st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4),
        ),
    ),
    msg_id=header_values,
    timestamp=header_values,
    signature=st.one_of(
        header_values, st.just("v1,AAAA"), st.text(max_size=40).map(lambda t: "v1," + t)
    ),
)
def test_fuzzed_deliveries_never_fail_with_5xx_or_change_state(
    ctx: Context,
    client: FlaskClient,
    body: bytes,
    msg_id: str | None,
    timestamp: str | None,
    signature: str | None,
) -> None:
    headers = {
        name: value
        for name, value in (
            ("webhook-id", msg_id),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signature),
        )
        if value is not None and value.isprintable() and "\n" not in value
    }
    before = counts(ctx)
    response = client.post("/webhooks/simulator", data=body, headers=headers)
    assert response.status_code in (400, 401)
    assert counts(ctx) == before


def test_webhooks_are_kept_for_a_gateway_with_only_its_webhook_secret_set(
    db_url: str, clock: FakeClock
) -> None:
    import random

    from support.app import make_settings

    from reconciler.bootstrap import bootstrap
    from reconciler.entrypoints.app import create_app

    secret = "whsec_stripe_test_only"
    ctx = bootstrap(
        make_settings(db_url, stripe_webhook_secret=secret),
        clock=clock,
        rand=random.Random(3).random,
    )
    try:
        client = create_app(ctx=ctx).test_client()
        body = json.dumps(
            {
                "id": "evt_1",
                "object": "event",
                "type": "payment_intent.succeeded",
                "created": int(clock.now.timestamp()),
                "data": {
                    "object": {"id": "pi_1", "object": "payment_intent", "status": "succeeded"}
                },
            }
        ).encode()
        ts = int(clock.now.timestamp())
        mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        response = client.post(
            "/webhooks/stripe", data=body, headers={"Stripe-Signature": f"t={ts},v1={mac}"}
        )
        assert response.status_code == 200
        assert response.json["result"] == "orphan"
        assert counts(ctx)[2] == 1
        # ...but payments cannot be registered for it until its API key is set.
        assert (
            "stripe"
            not in client.get("/openapi.json").json["components"]["schemas"]["PaymentRequest"][
                "properties"
            ]["gateway"]["enum"]
        )
    finally:
        ctx.close()


def test_a_status_change_is_logged_with_the_payment_and_gateway(
    client: FlaskClient, merchant: MerchantAuth, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    pid = register(client, merchant, "sim_pay_log")
    with caplog.at_level("INFO", logger="reconciler.services.changes"):
        deliver(client, clock, "m_log", event("sim_pay_log", "succeeded", clock.now))
    (record,) = [r for r in caplog.records if r.getMessage() == "payment status reported"]
    assert (record.payment_id, record.gateway, record.to_status) == (pid, "simulator", "succeeded")


def test_pruning_drops_old_processed_bodies_and_keeps_orphans_and_timelines(
    ctx: Context, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    from reconciler.services.errors import ValidationFailed
    from reconciler.services.retention import prune_inbox

    pid = register(client, merchant, "sim_pay_old")
    deliver(client, clock, "m_old", event("sim_pay_old", "succeeded", clock.now))
    deliver(client, clock, "m_orphan_old", event("sim_pay_nobody", "failed", clock.now))
    clock.advance(8 * 86_400)
    register(client, merchant, "sim_pay_new")
    deliver(client, clock, "m_new", event("sim_pay_new", "succeeded", clock.now))
    with pytest.raises(ValidationFailed):
        prune_inbox(ctx, 3)
    assert prune_inbox(ctx, 7) == 1
    with ctx.read() as session:
        left = {e.gateway_event_id for e in session.query(WebhookInbox)}
    assert left == {"m_orphan_old", "m_new"}
    timeline = client.get(f"/v1/payments/{pid}/events", headers=merchant.headers).json["data"]
    assert [e["gateway_event_id"] for e in timeline] == [None, "m_old"]  # registered, then m_old
