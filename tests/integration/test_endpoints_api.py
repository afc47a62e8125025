"""The webhook endpoints API against a real database, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from support.app import MerchantAuth, make_settings, register_payment
from support.clock import FakeClock
from support.outbox import record_payment_event
from support.simulator import Simulator

from reconciler.adapters import repository
from reconciler.adapters.models import NotificationDelivery, WebhookEndpoint
from reconciler.bootstrap import Context, bootstrap
from reconciler.entrypoints.app import create_app
from reconciler.entrypoints.schemas import payment_resource
from reconciler.services.merchants import create_merchant
from reconciler.services.notifications import signing_secrets

RESOURCE_FIELDS = {
    "id", "url", "events", "description", "status", "disabled_reason", "last_error",
    "last_error_at", "created_at",
}  # fmt: skip
ALL_EVENTS = [
    "payment.succeeded",
    "payment.failed",
    "payment.canceled",
    "payment.needs_review",
    "payment.gave_up",
]
LOCAL = "http://127.0.0.1:8200/hooks"


@pytest.fixture
def ctx(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[Context]:
    """A context that allows private destinations, as development and `make run` do."""
    settings = make_settings(db_url, simulator.url, notify_allow_private=1)
    context = bootstrap(settings, clock=clock, rand=random.Random(1).random)
    yield context
    context.close()


@pytest.fixture
def strict_client(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[FlaskClient]:
    """A client of the same database with the production rule: public destinations only."""
    context = bootstrap(make_settings(db_url, simulator.url), clock=clock)
    yield create_app(ctx=context).test_client()
    context.close()


def create(client: FlaskClient, merchant: MerchantAuth, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/webhook_endpoints", json={"url": LOCAL, **body}, headers=merchant.headers
    )
    assert response.status_code == 201, response.json
    created: dict[str, Any] = response.json
    return created


def record(ctx: Context, payment_id: str, event_type: str = "payment.succeeded") -> None:
    with ctx.sessions.begin() as session:
        payment = repository.payment_for_update(session, payment_id)
        assert payment is not None
        record_payment_event(
            session,
            payment,
            event_type,
            now=ctx.clock(),
            resource=payment_resource(payment),
            policy=ctx.settings.notify.policy,
        )


def deliveries_of(ctx: Context, endpoint_id: str) -> list[NotificationDelivery]:
    with ctx.read() as session:
        return list(session.query(NotificationDelivery).filter_by(endpoint_id=endpoint_id).all())


def test_creating_an_endpoint_returns_201_with_its_secret_once(
    client: FlaskClient, merchant: MerchantAuth
) -> None:
    response = client.post(
        "/v1/webhook_endpoints",
        json={"url": LOCAL, "description": "orders service"},
        headers=merchant.headers,
    )
    assert response.status_code == 201, response.json
    body = response.json
    assert set(body) == RESOURCE_FIELDS | {"secret"}
    assert body["id"].startswith("we_") and body["secret"].startswith("whsec_")
    assert response.headers["Location"] == f"/v1/webhook_endpoints/{body['id']}"
    assert (body["events"], body["status"], body["disabled_reason"]) == (
        ALL_EVENTS,
        "enabled",
        None,
    )
    assert body["created_at"] == "2026-11-28T10:00:00.000Z"
    shown = client.get(f"/v1/webhook_endpoints/{body['id']}", headers=merchant.headers).json
    assert set(shown) == RESOURCE_FIELDS


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "url"),
        ({"url": LOCAL, "colour": "red"}, "colour"),
        ({"url": LOCAL, "events": []}, "events"),
        ({"url": LOCAL, "events": ["payment.refunded"]}, "events"),
        ({"url": LOCAL, "events": "payment.failed"}, "events"),
        ({"url": LOCAL, "description": "   "}, "description"),
        ({"url": LOCAL, "description": "a\u0000b"}, "description"),
        ({"url": 42}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "ftp://127.0.0.1/"}, "https"),
        ({"url": "http://10.0.0.7/hooks"}, "https"),  # private allowed, http only to loopback
        ([LOCAL], "object"),
    ],
)
def test_invalid_endpoint_bodies_are_400_problems(
    client: FlaskClient, merchant: MerchantAuth, body: Any, message: str
) -> None:
    response = client.post("/v1/webhook_endpoints", json=body, headers=merchant.headers)
    assert response.status_code == 400, response.json
    assert response.content_type == "application/problem+json"
    assert message in response.json["detail"]
    assert response.json["instance"] == "/v1/webhook_endpoints"


@pytest.mark.parametrize(
    ("method", "suffix", "body", "fields"),
    [
        (
            "post",
            "",
            {"url": 42, "events": [], "description": "  ", "colour": "red"},
            ["url", "events", "description", "colour"],
        ),
        (
            "patch",
            "/{id}",
            {"url": None, "status": "paused", "secret": "x"},
            ["url", "status", "secret"],
        ),
        ("post", "/{id}/recover", {"since": 1764324000, "all": True}, ["since", "all"]),
    ],
)
def test_a_400_lists_every_invalid_field_of_the_body(
    client: FlaskClient,
    merchant: MerchantAuth,
    method: str,
    suffix: str,
    body: dict[str, Any],
    fields: list[str],
) -> None:
    path = "/v1/webhook_endpoints" + suffix.format(id=create(client, merchant)["id"])
    response = getattr(client, method)(path, json=body, headers=merchant.headers)
    assert response.status_code == 400, response.json
    assert [e["field"] for e in response.json["errors"]] == fields
    assert response.json["instance"] == path


def test_a_400_lists_every_invalid_delivery_list_parameter(
    client: FlaskClient, merchant: MerchantAuth
) -> None:
    path = f"/v1/webhook_endpoints/{create(client, merchant)['id']}/deliveries"
    response = client.get(f"{path}?status=lost&limit=0&stauts=failed", headers=merchant.headers)
    assert response.status_code == 400, response.json
    assert [e["field"] for e in response.json["errors"]] == ["status", "limit", "stauts"]
    assert response.json["instance"] == path


def test_a_body_that_is_not_json_is_a_400_problem(
    client: FlaskClient, merchant: MerchantAuth
) -> None:
    response = client.post(
        "/v1/webhook_endpoints",
        data=b"{url:",
        headers={**merchant.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8200/hooks",
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",
        "https://2130706433/hooks",  # 127.0.0.1 in decimal
        "https://0x7f.1/hooks",
        "https://[::1]/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
        "https://10.0.0.7/hooks",
        "https://192.168.1.20/hooks",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/",
        "https://[fe80::1]/",
        "https://0.0.0.0/",
    ],
)
def test_destinations_inside_are_refused_at_registration(
    strict_client: FlaskClient, merchant: MerchantAuth, url: str
) -> None:
    response = strict_client.post(
        "/v1/webhook_endpoints", json={"url": url}, headers=merchant.headers
    )
    assert response.status_code == 400, response.json
    # One answer for every address inside: naming it (or its kind) would map the network.
    assert response.json["detail"] == "url refused: the address is not allowed"


def test_an_endpoint_url_changed_to_one_inside_is_refused(
    strict_client: FlaskClient, client: FlaskClient, merchant: MerchantAuth
) -> None:
    endpoint = create(client, merchant)
    response = strict_client.patch(
        f"/v1/webhook_endpoints/{endpoint['id']}",
        json={"url": "https://10.1.1.1/"},
        headers=merchant.headers,
    )
    assert response.status_code == 400 and "url refused" in response.json["detail"]


def test_endpoints_are_listed_oldest_first_for_their_merchant_only(
    client: FlaskClient, merchant: MerchantAuth, other_merchant: MerchantAuth, clock: FakeClock
) -> None:
    mine = [create(client, merchant)["id"]]
    clock.advance(1)
    mine.append(create(client, merchant)["id"])
    create(client, other_merchant)
    listed = client.get("/v1/webhook_endpoints", headers=merchant.headers).json["data"]
    assert [e["id"] for e in listed] == mine
    assert all("secret" not in e for e in listed)


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("get", "", None),
        ("patch", "", {"description": "mine now"}),
        ("delete", "", None),
        ("post", "/rotate_secret", None),
        ("get", "/deliveries", None),
        ("post", "/deliveries/del_x/retry", None),
        ("post", "/recover", {"since": "2026-11-28T09:00:00Z"}),
    ],
)
def test_another_merchants_endpoint_is_404(
    client: FlaskClient,
    merchant: MerchantAuth,
    other_merchant: MerchantAuth,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
) -> None:
    endpoint = create(client, merchant)
    path = f"/v1/webhook_endpoints/{endpoint['id']}{suffix}"
    response = getattr(client, method)(path, json=body, headers=other_merchant.headers)
    assert response.status_code == 404
    assert response.content_type == "application/problem+json"
    still = client.get(f"/v1/webhook_endpoints/{endpoint['id']}", headers=merchant.headers)
    assert still.json == {k: v for k, v in endpoint.items() if k != "secret"}


def test_the_endpoints_api_needs_an_api_key(client: FlaskClient) -> None:
    response = client.get("/v1/webhook_endpoints")
    assert response.status_code == 401
    assert response.content_type == "application/problem+json"


def test_patch_changes_only_the_fields_sent(client: FlaskClient, merchant: MerchantAuth) -> None:
    endpoint = create(client, merchant, description="first")
    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    changed = client.patch(
        path,
        json={"url": "http://localhost:8300/in", "events": ["payment.failed", "payment.succeeded"]},
        headers=merchant.headers,
    ).json
    # Events come back in the contract's order, whatever order they were sent in.
    assert changed["events"] == ["payment.succeeded", "payment.failed"]
    assert (changed["url"], changed["description"]) == ("http://localhost:8300/in", "first")
    cleared = client.patch(path, json={"description": None}, headers=merchant.headers).json
    assert cleared["description"] is None and cleared["url"] == "http://localhost:8300/in"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "at least one"),
        ({"url": None}, "url: cannot be null"),
        ({"status": "paused"}, "status"),
        ({"events": None}, "events: cannot be null"),
        ({"secret": "whsec_mine"}, "secret"),
    ],
)
def test_invalid_patches_are_400_problems(
    client: FlaskClient, merchant: MerchantAuth, body: dict[str, Any], message: str
) -> None:
    endpoint = create(client, merchant)
    response = client.patch(
        f"/v1/webhook_endpoints/{endpoint['id']}", json=body, headers=merchant.headers
    )
    assert response.status_code == 400, response.json
    assert message in response.json["detail"]


def test_disabling_an_endpoint_stops_its_pending_deliveries_and_enabling_clears_the_reason(
    client: FlaskClient, merchant: MerchantAuth, ctx: Context
) -> None:
    endpoint = create(client, merchant)
    record(ctx, register_payment(client, merchant, "sim_pay_dis_1"))
    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    disabled = client.patch(path, json={"status": "disabled"}, headers=merchant.headers).json
    assert (disabled["status"], disabled["disabled_reason"]) == (
        "disabled",
        "disabled by the merchant",
    )
    [delivery] = deliveries_of(ctx, endpoint["id"])
    assert (delivery.status, delivery.next_attempt_at) == ("failed", None)
    assert delivery.last_error == "endpoint disabled: disabled by the merchant"
    enabled = client.patch(path, json={"status": "enabled"}, headers=merchant.headers).json
    assert (enabled["status"], enabled["disabled_reason"]) == ("enabled", None)


def test_a_deleted_endpoint_is_gone_and_gets_nothing_more(
    client: FlaskClient, merchant: MerchantAuth, ctx: Context
) -> None:
    endpoint = create(client, merchant)
    payment_id = register_payment(client, merchant, "sim_pay_del_1")
    record(ctx, payment_id)
    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    response = client.delete(path, headers=merchant.headers)
    assert (response.status_code, response.data) == (204, b"")
    assert client.get(path, headers=merchant.headers).status_code == 404
    assert client.delete(path, headers=merchant.headers).status_code == 404
    assert client.get("/v1/webhook_endpoints", headers=merchant.headers).json["data"] == []
    [delivery] = deliveries_of(ctx, endpoint["id"])
    assert (delivery.status, delivery.last_error) == ("failed", "endpoint deleted")
    record(ctx, payment_id, "payment.needs_review")
    assert len(deliveries_of(ctx, endpoint["id"])) == 1


def test_rotation_shows_a_new_secret_and_both_sign_for_24_hours(
    client: FlaskClient, merchant: MerchantAuth, ctx: Context, clock: FakeClock
) -> None:
    endpoint = create(client, merchant)
    response = client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret", headers=merchant.headers
    )
    assert response.status_code == 200
    rotated = response.json
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != endpoint["secret"]
    with ctx.read() as session:
        row = session.get_one(WebhookEndpoint, endpoint["id"])
    assert ctx.secrets.open_all(signing_secrets(row, clock())) == (
        rotated["secret"],
        endpoint["secret"],
    )
    assert ctx.secrets.open_all(signing_secrets(row, clock.advance(24 * 3600 - 1))) == (
        rotated["secret"],
        endpoint["secret"],
    )
    assert ctx.secrets.open_all(signing_secrets(row, clock.advance(1))) == (rotated["secret"],)


def test_deliveries_are_listed_newest_first_with_a_cursor_and_a_status_filter(
    client: FlaskClient, merchant: MerchantAuth, ctx: Context, clock: FakeClock
) -> None:
    endpoint = create(client, merchant)
    payment_id = register_payment(client, merchant, "sim_pay_list_1")
    for event_type in ("payment.needs_review", "payment.succeeded", "payment.gave_up"):
        record(ctx, payment_id, event_type)
        clock.advance(1)
    path = f"/v1/webhook_endpoints/{endpoint['id']}/deliveries"
    first = client.get(path + "?limit=2", headers=merchant.headers).json
    assert [d["event_type"] for d in first["data"]] == ["payment.gave_up", "payment.succeeded"]
    assert first["data"][0] == {
        "id": first["data"][0]["id"],
        "event_id": first["data"][0]["event_id"],
        "event_type": "payment.gave_up",
        "payment_id": payment_id,
        "status": "pending",
        "created_at": "2026-11-28T10:00:02.000Z",
        "attempts": 0,
        "next_attempt_at": "2026-11-28T10:00:02.000Z",
        "last_attempt_at": None,
        "last_response_status": None,
        "last_error": None,
        "delivered_at": None,
    }
    rest = client.get(
        f"{path}?limit=2&cursor={first['next_cursor']}", headers=merchant.headers
    ).json
    assert [d["event_type"] for d in rest["data"]] == ["payment.needs_review"]
    assert rest["next_cursor"] is None
    assert client.get(path + "?status=failed", headers=merchant.headers).json["data"] == []
    assert len(client.get(path + "?status=pending", headers=merchant.headers).json["data"]) == 3


@pytest.mark.parametrize(
    "query",
    ["?status=lost", "?limit=0", "?limit=101", "?limit=ten", "?cursor=%%%", "?stauts=failed"],
)
def test_bad_delivery_list_parameters_are_400_problems(
    client: FlaskClient, merchant: MerchantAuth, query: str
) -> None:
    endpoint = create(client, merchant)
    response = client.get(
        f"/v1/webhook_endpoints/{endpoint['id']}/deliveries{query}", headers=merchant.headers
    )
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"


def fail_all(ctx: Context, endpoint_id: str) -> None:
    with ctx.sessions.begin() as session:
        repository.halt_pending_deliveries(session, endpoint_id, reason="HTTP 500")


def test_retrying_a_failed_delivery_makes_it_due_now_on_a_fresh_schedule(
    client: FlaskClient, merchant: MerchantAuth, ctx: Context, clock: FakeClock
) -> None:
    endpoint = create(client, merchant)
    record(ctx, register_payment(client, merchant, "sim_pay_retry_1"))
    fail_all(ctx, endpoint["id"])
    [delivery] = deliveries_of(ctx, endpoint["id"])
    clock.advance(5 * 86400)
    response = client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}/deliveries/{delivery.id}/retry",
        headers=merchant.headers,
    )
    assert response.status_code == 202
    assert (response.json["status"], response.json["next_attempt_at"]) == (
        "pending",
        "2026-12-03T10:00:00.000Z",
    )
    [revived] = deliveries_of(ctx, endpoint["id"])
    assert revived.give_up_at == clock() + timedelta(days=3)


def test_retrying_an_unknown_delivery_is_404_and_on_a_disabled_endpoint_409(
    client: FlaskClient, merchant: MerchantAuth, ctx: Context
) -> None:
    endpoint = create(client, merchant)
    record(ctx, register_payment(client, merchant, "sim_pay_retry_2"))
    [delivery] = deliveries_of(ctx, endpoint["id"])
    base = f"/v1/webhook_endpoints/{endpoint['id']}"
    assert (
        client.post(f"{base}/deliveries/del_nope/retry", headers=merchant.headers).status_code
        == 404
    )
    client.patch(base, json={"status": "disabled"}, headers=merchant.headers)
    response = client.post(f"{base}/deliveries/{delivery.id}/retry", headers=merchant.headers)
    assert response.status_code == 409
    assert "disabled" in response.json["detail"]


def test_recover_revives_failed_deliveries_created_since_a_time(
    client: FlaskClient, merchant: MerchantAuth, ctx: Context, clock: FakeClock
) -> None:
    endpoint = create(client, merchant)
    payment_id = register_payment(client, merchant, "sim_pay_recover_1")
    record(ctx, payment_id, "payment.needs_review")  # at 10:00, before `since`
    clock.advance(3600)
    record(ctx, payment_id, "payment.succeeded")
    record(ctx, payment_id, "payment.gave_up")
    fail_all(ctx, endpoint["id"])
    response = client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}/recover",
        json={"since": "2026-11-28T10:30:00Z"},
        headers=merchant.headers,
    )
    assert (response.status_code, response.json) == (202, {"count": 2})
    statuses = sorted(d.status for d in deliveries_of(ctx, endpoint["id"]))
    assert statuses == ["failed", "pending", "pending"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-11-28T09:00:00"}, "since"),  # no zone: ambiguous
        ({"since": 1764320400}, "since"),
        ({"since": "1764320400"}, "since"),  # pydantic alone would read Unix time in it
        ({"since": "2026-11-28T09:00+01:00"}, "since"),  # no seconds: not RFC 3339
        ({"since": "2027-01-01T00:00:00Z"}, "future"),
        ({"since": "2026-11-28T09:00:00Z", "all": True}, "all"),
    ],
)
def test_invalid_recover_bodies_are_400_problems(
    client: FlaskClient, merchant: MerchantAuth, body: dict[str, Any], message: str
) -> None:
    endpoint = create(client, merchant)
    response = client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}/recover", json=body, headers=merchant.headers
    )
    assert response.status_code == 400, response.json
    assert message in response.json["detail"]


@pytest.mark.parametrize(
    "since",
    [
        "2026-11-28T09:00:00Z",
        "2026-11-28t09:00:00.123456789z",  # lower case and nanoseconds are RFC 3339 too
        "2026-11-28 14:30:00+05:30",  # RFC 3339 lets a space stand for the T
    ],
)
def test_recover_takes_any_rfc3339_time_with_a_zone(
    client: FlaskClient, merchant: MerchantAuth, since: str
) -> None:
    endpoint = create(client, merchant)
    response = client.post(
        f"/v1/webhook_endpoints/{endpoint['id']}/recover",
        json={"since": since},
        headers=merchant.headers,
    )
    assert (response.status_code, response.json) == (202, {"count": 0})


def test_a_merchant_has_at_most_the_configured_number_of_endpoints(
    db_url: str, simulator: Simulator, clock: FakeClock
) -> None:
    settings = make_settings(db_url, simulator.url, notify_allow_private=1, notify_max_endpoints=3)
    context = bootstrap(settings, clock=clock)
    try:
        client = create_app(ctx=context).test_client()
        record, key = create_merchant(context, "busy")
        merchant = MerchantAuth(record.id, key)
        made = [create(client, merchant)["id"] for _ in range(3)]
        over = client.post("/v1/webhook_endpoints", json={"url": LOCAL}, headers=merchant.headers)
        assert over.status_code == 409
        assert over.headers["Content-Type"] == "application/problem+json"
        assert "at most 3" in over.json["detail"]
        # A deleted endpoint frees its place.
        client.delete(f"/v1/webhook_endpoints/{made[0]}", headers=merchant.headers)
        assert create(client, merchant)["id"] not in made
    finally:
        context.close()


def test_registering_a_name_whose_dns_never_answers_does_not_hold_the_request(
    db_url: str, simulator: Simulator, clock: FakeClock
) -> None:
    answer = threading.Event()

    def resolver(host: str, port: int) -> list[str]:
        if host == "silent.example":
            answer.wait(30)  # a DNS server that never answers
        return {"inside.example": ["10.1.2.3"]}.get(host, ["93.184.216.34"])

    context = bootstrap(make_settings(db_url, simulator.url), clock=clock, resolver=resolver)
    try:
        client = create_app(ctx=context).test_client()
        record, key = create_merchant(context, "dns")
        headers = MerchantAuth(record.id, key).headers
        # Accepted without its addresses: the connect-time guard checks it at delivery.
        slow = client.post(
            "/v1/webhook_endpoints", json={"url": "https://silent.example/"}, headers=headers
        )
        assert slow.status_code == 201, slow.json
        inside = client.post(
            "/v1/webhook_endpoints", json={"url": "https://inside.example/"}, headers=headers
        )
        assert inside.status_code == 400
        assert "10.1.2.3" not in inside.get_data(as_text=True)
        assert inside.json["detail"] == "url refused: the address is not allowed"
    finally:
        answer.set()
        context.close()
