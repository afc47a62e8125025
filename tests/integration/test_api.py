"""The merchant API against a real database and a real simulator process."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from support.app import MerchantAuth
from support.simulator import Simulator


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "merchant_reference": "order-1042",
        "gateway": "simulator",
        "amount": 49900,
        "currency": "INR",
        "gateway_payment_id": "sim_pay_external_1",
        **overrides,
    }


def test_registering_a_payment_returns_201_with_location(
    client: FlaskClient, merchant: MerchantAuth
) -> None:
    response = client.post("/v1/payments", json=body(), headers=merchant.headers)
    assert response.status_code == 201, response.json
    payment = response.json
    assert response.headers["Location"] == f"/v1/payments/{payment['id']}"
    assert payment["status"] == "pending"
    assert payment["sync"]["state"] == "awaiting_webhook"
    assert payment["sync"]["next_poll_at"] == "2026-11-28T10:00:30.000Z"
    assert payment["created_at"].endswith("Z")


def test_same_reference_and_body_again_is_200_and_the_same_payment(
    client: FlaskClient, merchant: MerchantAuth
) -> None:
    first = client.post("/v1/payments", json=body(), headers=merchant.headers)
    again = client.post("/v1/payments", json=body(), headers=merchant.headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["id"] == first.json["id"]


def test_same_reference_with_a_different_body_is_409(
    client: FlaskClient, merchant: MerchantAuth
) -> None:
    client.post("/v1/payments", json=body(), headers=merchant.headers)
    response = client.post("/v1/payments", json=body(amount=1), headers=merchant.headers)
    assert response.status_code == 409
    assert response.content_type == "application/problem+json"


def test_another_merchants_payment_is_404(
    client: FlaskClient, merchant: MerchantAuth, other_merchant: MerchantAuth
) -> None:
    pid = client.post("/v1/payments", json=body(), headers=merchant.headers).json["id"]
    for path in (f"/v1/payments/{pid}", f"/v1/payments/{pid}/events"):
        assert client.get(path, headers=other_merchant.headers).status_code == 404
    assert (
        client.post(f"/v1/payments/{pid}/refresh", headers=other_merchant.headers).status_code
        == 404
    )
    listed = client.get("/v1/payments", headers=other_merchant.headers).json
    assert listed == {"data": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"amount": True}, "amount"),  # JSON true is not an amount, though Python says 1
        ({"currency": "inr"}, "currency"),
        ({"currency": "XYZ"}, "currency"),
        ({"gateway": "paypal"}, "gateway"),
        ({"merchant_reference": ""}, "merchant_reference"),
        ({"merchant_reference": "x" * 201}, "merchant_reference"),
        ({"surprise": 1}, "unknown field"),
    ],
)
def test_bad_bodies_are_400_problems(
    client: FlaskClient, merchant: MerchantAuth, change: dict[str, Any], fragment: str
) -> None:
    response = client.post("/v1/payments", json=body(**change), headers=merchant.headers)
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    problem = response.json
    assert set(problem) >= {"type", "title", "status", "detail"}
    assert fragment in problem["detail"]


def test_unconfigured_gateway_is_a_clear_400(client: FlaskClient, merchant: MerchantAuth) -> None:
    response = client.post("/v1/payments", json=body(gateway="stripe"), headers=merchant.headers)
    assert response.status_code == 400
    assert "not configured" in response.json["detail"]


def test_missing_or_wrong_key_is_401(client: FlaskClient) -> None:
    assert client.get("/v1/payments").status_code == 401
    response = client.get("/v1/payments", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.content_type == "application/problem+json"


def test_non_json_and_oversized_bodies(client: FlaskClient, merchant: MerchantAuth) -> None:
    response = client.post(
        "/v1/payments", data=b"{not json", headers=merchant.headers, content_type="application/json"
    )
    assert response.status_code == 400
    huge = client.post(
        "/v1/payments",
        data=b"{" + b" " * 70_000 + b"}",
        headers=merchant.headers,
        content_type="application/json",
    )
    assert huge.status_code == 413
    assert huge.content_type == "application/problem+json"


def test_list_is_newest_first_with_a_cursor(
    client: FlaskClient, merchant: MerchantAuth, clock: Any
) -> None:
    ids = []
    for n in range(5):
        clock.advance(1)
        created = client.post(
            "/v1/payments",
            json=body(merchant_reference=f"o-{n}", gateway_payment_id=f"sim_pay_{n}"),
            headers=merchant.headers,
        )
        ids.append(created.json["id"])
    first = client.get("/v1/payments?limit=2", headers=merchant.headers).json
    assert [p["id"] for p in first["data"]] == ids[::-1][:2]
    second = client.get(
        f"/v1/payments?limit=2&cursor={first['next_cursor']}", headers=merchant.headers
    ).json
    third = client.get(
        f"/v1/payments?limit=2&cursor={second['next_cursor']}", headers=merchant.headers
    ).json
    assert [p["id"] for p in second["data"] + third["data"]] == ids[::-1][2:]
    assert third["next_cursor"] is None
    assert client.get("/v1/payments?cursor=garbage", headers=merchant.headers).status_code == 400
    assert client.get("/v1/payments?limit=0", headers=merchant.headers).status_code == 400
    assert client.get("/v1/payments?status=weird", headers=merchant.headers).status_code == 400


def test_list_filters_by_status(client: FlaskClient, merchant: MerchantAuth) -> None:
    client.post("/v1/payments", json=body(), headers=merchant.headers)
    assert (
        len(client.get("/v1/payments?status=pending", headers=merchant.headers).json["data"]) == 1
    )
    assert client.get("/v1/payments?status=succeeded", headers=merchant.headers).json["data"] == []


def test_creating_at_the_gateway_without_an_id(
    client: FlaskClient, merchant: MerchantAuth, simulator: Simulator
) -> None:
    response = client.post(
        "/v1/payments",
        json=body(gateway_payment_id=None) | {"merchant_reference": "new-1"},
        headers=merchant.headers,
    )
    assert response.status_code == 201
    payment = response.json
    assert payment["gateway_payment_id"].startswith("sim_pay_")
    assert payment["gateway_payment_id"] in simulator.truth()["payments"]
    events = client.get(f"/v1/payments/{payment['id']}/events", headers=merchant.headers).json
    assert [e["source"] for e in events["data"]] == ["api"]


def test_refresh_is_202_and_makes_the_payment_due_now(
    client: FlaskClient, merchant: MerchantAuth
) -> None:
    pid = client.post("/v1/payments", json=body(), headers=merchant.headers).json["id"]
    response = client.post(f"/v1/payments/{pid}/refresh", headers=merchant.headers)
    assert response.status_code == 202
    assert response.json["sync"]["next_poll_at"] == "2026-11-28T10:00:00.000Z"


def test_unknown_routes_and_methods_are_problems(client: FlaskClient) -> None:
    assert client.get("/nope").content_type == "application/problem+json"
    response = client.delete("/healthz")
    assert response.status_code == 405
    assert response.content_type == "application/problem+json"
