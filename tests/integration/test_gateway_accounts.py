"""Each merchant its own gateway account: admin API, per-account webhooks, breaker, secrets."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url
from support.app import MerchantAuth, make_settings
from support.clock import FakeClock
from support.fakes.stripe_server import SECRET_KEY, StripeFake

from reconciler.bootstrap import Context, bootstrap
from reconciler.entrypoints.app import create_app
from reconciler.services.merchants import create_merchant
from reconciler.services.sweep import Sweeper

ADMIN = {"Authorization": "Bearer admin-token-for-tests-of-gateway-accounts"}
SECRET_A = "whsec_account_a_test_secret"
SECRET_B = "whsec_account_b_test_secret"
REVOKED_KEY = "sk_test_revoked_for_account_b"


@pytest.fixture
def fake() -> Iterator[StripeFake]:
    server = StripeFake()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ctx(db_url: str, fake: StripeFake, clock: FakeClock) -> Iterator[Context]:
    """Stripe reachable, but no environment credentials: only merchants' own accounts."""
    settings = make_settings(
        db_url,
        stripe_api_base=fake.url,
        admin_token=ADMIN["Authorization"][7:],
        notify_allow_private=1,
    )
    context = bootstrap(settings, clock=clock, rand=random.Random(1).random)
    yield context
    context.close()


def add_account(
    client: FlaskClient, merchant: MerchantAuth, api_key: str, secret: str
) -> dict[str, str]:
    response = client.post(
        "/admin/gateway_accounts",
        json={
            "merchant_id": merchant.id,
            "gateway": "stripe",
            "credentials": {"api_key": api_key},
            "webhook_secret": secret,
        },
        headers=ADMIN,
    )
    assert response.status_code == 201, response.json
    account: dict[str, str] = response.json
    return account


def register(
    client: FlaskClient, merchant: MerchantAuth, intent_id: str, **extra: str
) -> dict[str, object]:
    response = client.post(
        "/v1/payments",
        json={
            "merchant_reference": f"order-{intent_id}",
            "gateway": "stripe",
            "amount": 4990,
            "currency": "USD",
            "gateway_payment_id": intent_id,
            **extra,
        },
        headers=merchant.headers,
    )
    assert response.status_code == 201, response.json
    payment: dict[str, object] = response.json
    return payment


def deliver(
    client: FlaskClient, fake: StripeFake, path: str, intent_id: str, secret: str, now: int
) -> int:
    event = fake.event("payment_intent.succeeded", intent_id, created=now)
    headers, body = fake.signed(event, secrets_=(secret,), timestamp=now)
    return client.post(path, data=body, headers=headers).status_code


def test_an_account_is_added_listed_rotated_and_disabled_without_showing_secrets(
    client: FlaskClient, merchant: MerchantAuth, other_merchant: MerchantAuth
) -> None:
    account = add_account(client, merchant, SECRET_KEY, SECRET_A)
    assert account["id"].startswith("gwa_")
    assert account["webhook_path"] == f"/webhooks/stripe/{account['id']}"
    assert (account["merchant_id"], account["status"]) == (merchant.id, "active")
    listed = client.get(f"/admin/gateway_accounts?merchant_id={merchant.id}", headers=ADMIN)
    assert [a["id"] for a in listed.json["data"]] == [account["id"]]
    rotated = client.post(
        f"/admin/gateway_accounts/{account['id']}/rotate",
        json={"webhook_secret": "whsec_new"},
        headers=ADMIN,
    )
    assert rotated.status_code == 200
    own = client.get("/v1/gateway_accounts", headers=merchant.headers).json["data"]
    assert own == [
        {
            "id": account["id"],
            "gateway": "stripe",
            "status": "active",
            "webhook_path": account["webhook_path"],
        }
    ]
    assert client.get("/v1/gateway_accounts", headers=other_merchant.headers).json["data"] == []
    for answer in (account, listed.json, rotated.json, own):
        text = repr(answer)
        assert SECRET_A not in text and SECRET_KEY not in text and "whsec_new" not in text
    gone = client.delete(f"/admin/gateway_accounts/{account['id']}", headers=ADMIN)
    assert gone.json["status"] == "disabled"
    refused = client.post(
        "/v1/payments",
        json={
            "merchant_reference": "after-disable",
            "gateway": "stripe",
            "amount": 1,
            "currency": "USD",
            "gateway_account": account["id"],
        },
        headers=merchant.headers,
    )
    assert refused.status_code == 409


@pytest.mark.parametrize(
    "body",
    [
        {"merchant_id": "mer_nobody", "gateway": "stripe", "credentials": {"api_key": "k"}},
        {"gateway": "stripe", "credentials": {"key_id": "k"}},  # Razorpay's fields on Stripe
        {"gateway": "paypal", "credentials": {}},
    ],
)
def test_a_bad_account_request_is_a_problem_not_a_500(
    client: FlaskClient, merchant: MerchantAuth, body: dict[str, object]
) -> None:
    response = client.post(
        "/admin/gateway_accounts",
        json={"merchant_id": merchant.id, "webhook_secret": "whsec_x", **body},
        headers=ADMIN,
    )
    assert response.status_code in (400, 404)
    assert response.content_type == "application/problem+json"


def test_each_accounts_webhooks_apply_only_to_its_own_payments(
    fake: StripeFake,
    client: FlaskClient,
    merchant: MerchantAuth,
    other_merchant: MerchantAuth,
    clock: FakeClock,
) -> None:
    account_a = add_account(client, merchant, SECRET_KEY, SECRET_A)
    account_b = add_account(client, other_merchant, REVOKED_KEY, SECRET_B)
    intent = fake.add_intent(status="processing")
    # The same gateway id in two accounts is two payments: ids are unique per account.
    paid_a = register(client, merchant, intent["id"])
    paid_b = register(client, other_merchant, intent["id"])
    assert (paid_a["gateway_account"], paid_b["gateway_account"]) == (
        account_a["id"],
        account_b["id"],
    )
    fake.set_status(intent["id"], "succeeded")
    now = int(clock.now.timestamp())
    # A body signed for account A is a 401 on B's path and on the default path.
    assert deliver(client, fake, account_b["webhook_path"], intent["id"], SECRET_A, now) == 401
    assert deliver(client, fake, "/webhooks/stripe", intent["id"], SECRET_A, now) == 404
    assert deliver(client, fake, account_a["webhook_path"], intent["id"], SECRET_A, now) == 200
    shown_a = client.get(f"/v1/payments/{paid_a['id']}", headers=merchant.headers).json
    shown_b = client.get(f"/v1/payments/{paid_b['id']}", headers=other_merchant.headers).json
    assert (shown_a["status"], shown_b["status"]) == ("succeeded", "pending")
    events_b = client.get(f"/v1/payments/{paid_b['id']}/events", headers=other_merchant.headers)
    assert all(e["source"] != "webhook" for e in events_b.json["data"])
    assert deliver(client, fake, "/webhooks/stripe/gwa_unknown", intent["id"], SECRET_A, now) == 404


def test_a_rotated_out_webhook_secret_verifies_for_24_hours(
    fake: StripeFake, client: FlaskClient, merchant: MerchantAuth, clock: FakeClock
) -> None:
    account = add_account(client, merchant, SECRET_KEY, SECRET_A)
    rotated = client.post(
        f"/admin/gateway_accounts/{account['id']}/rotate",
        json={"webhook_secret": SECRET_B},
        headers=ADMIN,
    )
    assert rotated.status_code == 200
    intent = fake.add_intent(status="processing")
    path = account["webhook_path"]
    clock.advance(24 * 3600 - 60)
    now = int(clock.now.timestamp())
    assert deliver(client, fake, path, intent["id"], SECRET_A, now) == 200
    clock.advance(120)
    now = int(clock.now.timestamp())
    assert deliver(client, fake, path, intent["id"], SECRET_A, now + 1) == 401
    assert deliver(client, fake, path, intent["id"], SECRET_B, now + 2) == 200


def test_another_merchants_account_is_not_found(
    client: FlaskClient, merchant: MerchantAuth, other_merchant: MerchantAuth
) -> None:
    foreign = add_account(client, other_merchant, REVOKED_KEY, SECRET_B)
    response = client.post(
        "/v1/payments",
        json={
            "merchant_reference": "order-1",
            "gateway": "stripe",
            "amount": 100,
            "currency": "USD",
            "gateway_account": foreign["id"],
        },
        headers=merchant.headers,
    )
    assert response.status_code == 404
    assert foreign["id"] in response.json["detail"]
    assert other_merchant.id not in repr(response.json)


def test_a_revoked_key_opens_only_its_own_accounts_breaker(
    fake: StripeFake,
    ctx: Context,
    client: FlaskClient,
    merchant: MerchantAuth,
    other_merchant: MerchantAuth,
    clock: FakeClock,
) -> None:
    add_account(client, merchant, SECRET_KEY, SECRET_A)
    account_b = add_account(client, other_merchant, REVOKED_KEY, SECRET_B)
    intent_a = fake.add_intent(status="processing")
    intent_b = fake.add_intent(status="processing")
    paid_a = register(client, merchant, intent_a["id"])
    paid_b = register(client, other_merchant, intent_b["id"])
    fake.set_status(intent_a["id"], "succeeded")
    clock.advance(31)
    sweeper = Sweeper(ctx)
    try:
        sweeper.sweep_once()
        breakers = sweeper.breakers
    finally:
        sweeper.close()
    assert breakers[f"stripe/{account_b['id']}"].state.value == "open"
    assert "stripe" not in breakers or breakers["stripe"].state.value == "closed"
    shown_a = client.get(f"/v1/payments/{paid_a['id']}", headers=merchant.headers).json
    shown_b = client.get(f"/v1/payments/{paid_b['id']}", headers=other_merchant.headers).json
    assert shown_a["status"] == "succeeded"
    assert (shown_b["status"], shown_b["sync"]["poll_attempts"]) == ("pending", 0)


def test_the_database_file_holds_no_credentials_or_secrets(
    db_url: str, client: FlaskClient, merchant: MerchantAuth, ctx: Context
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("reads the SQLite file itself")
    add_account(client, merchant, SECRET_KEY, SECRET_A)
    endpoint = client.post(
        "/v1/webhook_endpoints",
        json={"url": "http://127.0.0.1:9/hooks"},
        headers=merchant.headers,
    )
    assert endpoint.status_code == 201, endpoint.json
    whsec = endpoint.json["secret"]
    ctx.engine.dispose()  # everything checkpointed into the file
    path = make_url(db_url).database
    assert path is not None
    files = [Path(path), Path(path + "-wal")]
    raw = b"".join(f.read_bytes() for f in files if f.exists())
    for secret in (SECRET_KEY, SECRET_A, whsec):
        assert secret.encode() not in raw


def test_storing_a_secret_without_a_key_is_refused_in_one_line(
    db_url: str, fake: StripeFake, clock: FakeClock
) -> None:
    settings = make_settings(db_url, admin_token="t" * 32, secrets_key="")
    keyless = bootstrap(settings.replace(secrets_key=()), clock=clock)
    try:
        app: Flask = create_app(ctx=keyless)
        merchant, _ = create_merchant(keyless, "acme")
        response = app.test_client().post(
            "/admin/gateway_accounts",
            json={
                "merchant_id": merchant.id,
                "gateway": "stripe",
                "credentials": {"api_key": SECRET_KEY},
                "webhook_secret": SECRET_A,
            },
            headers={"Authorization": "Bearer " + "t" * 32},
        )
    finally:
        keyless.close()
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    assert "RECONCILER_SECRETS_KEY" in response.json["detail"]
    assert "\n" not in response.json["detail"]


def test_the_operators_page_shows_the_accounts(client: FlaskClient, merchant: MerchantAuth) -> None:
    account = add_account(client, merchant, SECRET_KEY, SECRET_A)
    signed_in = client.post("/admin/ui/sign-in", data={"token": ADMIN["Authorization"][7:]})
    assert signed_in.status_code in (302, 303)
    page = client.get("/admin/ui/").get_data(as_text=True)
    assert account["id"] in page and account["webhook_path"] in page and merchant.id in page
    assert SECRET_A not in page and SECRET_KEY not in page


def test_without_a_named_account_the_only_active_one_is_used_else_the_default(
    client: FlaskClient, merchant: MerchantAuth
) -> None:
    first = add_account(client, merchant, SECRET_KEY, SECRET_A)
    body = {"gateway": "stripe", "amount": 100, "currency": "USD", "gateway_payment_id": "pi_x1"}
    one = client.post(
        "/v1/payments", json={**body, "merchant_reference": "r1"}, headers=merchant.headers
    )
    assert one.json["gateway_account"] == first["id"]
    add_account(client, merchant, SECRET_KEY, SECRET_B)
    # Two active accounts and no default Stripe account here: the merchant must name one.
    several = client.post(
        "/v1/payments",
        json={**body, "merchant_reference": "r2", "gateway_payment_id": "pi_x2"},
        headers=merchant.headers,
    )
    assert several.status_code == 400
    assert "name one in gateway_account" in several.json["detail"]
