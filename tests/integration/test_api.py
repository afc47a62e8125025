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
    ("change", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"amount": True}, "amount"),  # JSON true is not an amount, though Python says 1
        ({"amount": "49900"}, "amount"),  # nor is a string of digits
        ({"amount": 2**70}, "amount"),
        ({"amount": 1e20}, "amount"),  # a whole number, but past the largest amount
        ({"currency": "inr"}, "currency"),
        ({"currency": "XYZ"}, "currency"),
        ({"gateway": "paypal"}, "gateway"),
        ({"merchant_reference": ""}, "merchant_reference"),
        ({"merchant_reference": "   "}, "merchant_reference"),
        ({"merchant_reference": "x" * 201}, "merchant_reference"),
        ({"merchant_reference": 1042}, "merchant_reference"),  # numbers are not quietly text
        ({"merchant_reference": "order\x00"}, "merchant_reference"),
        ({"merchant_reference": "order\n"}, "merchant_reference"),
        ({"merchant_reference": "order\u200b"}, "merchant_reference"),  # zero-width space
        ({"merchant_reference": "order\u202e"}, "merchant_reference"),  # right-to-left override
        ({"merchant_reference": "order\udc00"}, "merchant_reference"),  # lone surrogate
        ({"gateway_payment_id": "sim\ud800"}, "gateway_payment_id"),
        ({"gateway_payment_id": ""}, "gateway_payment_id"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_bodies_are_400_problems_naming_the_field(
    client: FlaskClient, merchant: MerchantAuth, change: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/payments", json=body(**change), headers=merchant.headers)
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    problem = response.json
    assert set(problem) >= {"type", "title", "status", "detail", "instance", "errors"}
    assert problem["instance"] == "/v1/payments"
    assert [e["field"] for e in problem["errors"]] == [field]
    assert field in problem["detail"]


def test_a_400_lists_every_invalid_field(client: FlaskClient, merchant: MerchantAuth) -> None:
    bad = body(amount=0, currency="inr", merchant_reference="") | {"extra": 1}
    del bad["gateway"]
    response = client.post("/v1/payments", json=bad, headers=merchant.headers)
    assert response.status_code == 400
    errors = {e["field"]: e["detail"] for e in response.json["errors"]}
    assert errors.keys() == {"merchant_reference", "gateway", "amount", "currency", "extra"}
    assert errors["gateway"] == "is required"
    assert errors["extra"] == "unknown field"
    assert errors["currency"] == "must be an ISO 4217 code in upper case, e.g. INR"


def test_a_whole_number_float_is_an_integer_amount(
    client: FlaskClient, merchant: MerchantAuth
) -> None:
    # JSON has one number type; `49900.0` is the integer JSON Schema's `integer` allows.
    response = client.post("/v1/payments", json=body(amount=49900.0), headers=merchant.headers)
    assert response.status_code == 201, response.json
    assert response.json["amount"] == 49900
    again = client.post("/v1/payments", json=body(amount=49900), headers=merchant.headers)
    assert again.status_code == 200  # the same body, so the same payment


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


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("stauts=failed", ["stauts"]),  # a misspelt filter must not list every payment
        ("limit=0", ["limit"]),
        ("limit=101", ["limit"]),  # MAX_LIST_LIMIT
        ("limit=ten&status=weird&gateway=paypal", ["status", "gateway", "limit"]),
    ],
)
def test_bad_list_queries_are_400_problems_naming_every_parameter(
    client: FlaskClient, merchant: MerchantAuth, query: str, fields: list[str]
) -> None:
    response = client.get(f"/v1/payments?{query}", headers=merchant.headers)
    assert response.status_code == 400
    assert [e["field"] for e in response.json["errors"]] == fields
    assert response.json["instance"] == "/v1/payments"


def test_empty_filters_mean_any(client: FlaskClient, merchant: MerchantAuth) -> None:
    client.post("/v1/payments", json=body(), headers=merchant.headers)
    listed = client.get("/v1/payments?status=&gateway=&cursor=", headers=merchant.headers)
    assert listed.status_code == 200
    assert len(listed.json["data"]) == 1


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
    assert [(e["source"], e["outcome"]) for e in events["data"]] == [
        ("api", "registered"),
        ("api", "applied"),
    ]


def test_refresh_is_202_and_makes_the_payment_due_now(
    client: FlaskClient, merchant: MerchantAuth
) -> None:
    pid = client.post("/v1/payments", json=body(), headers=merchant.headers).json["id"]
    response = client.post(f"/v1/payments/{pid}/refresh", headers=merchant.headers)
    assert response.status_code == 202
    assert response.json["sync"]["next_poll_at"] == "2026-11-28T10:00:00.000Z"


def test_unknown_routes_and_methods_are_problems(client: FlaskClient) -> None:
    missing = client.get("/nope")
    assert missing.content_type == "application/problem+json"
    assert missing.json["instance"] == "/nope"
    response = client.delete("/healthz")
    assert response.status_code == 405
    assert response.content_type == "application/problem+json"
    assert response.json["instance"] == "/healthz"


def test_every_problem_names_the_request_path_as_its_instance(
    client: FlaskClient, merchant: MerchantAuth
) -> None:
    client.post("/v1/payments", json=body(), headers=merchant.headers)
    answers = {
        401: client.get("/v1/payments/pay_1"),
        404: client.get("/v1/payments/pay_1", headers=merchant.headers),
        409: client.post("/v1/payments", json=body(amount=1), headers=merchant.headers),
        400: client.get("/v1/payments?cursor=garbage", headers=merchant.headers),
    }
    for status, response in answers.items():
        assert response.status_code == status
        assert response.json["instance"] == response.request.path
    # A 400 found by a use case rather than a model still has its `errors` member.
    assert answers[400].json["errors"] == [
        {"field": None, "detail": "cursor is not one this API returned"}
    ]
