"""Operator endpoints: off without a token, then list, report, resolve, refresh."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from support.app import make_settings
from support.clock import FakeClock
from support.simulator import Simulator

from reconciler.bootstrap import bootstrap
from reconciler.entrypoints.app import create_app
from reconciler.services.merchants import create_merchant

ADMIN = {"Authorization": "Bearer admin-test-token-that-is-long-enough"}


@pytest.fixture
def admin_client(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[FlaskClient]:
    ctx = bootstrap(
        make_settings(db_url, simulator.url, admin_token="admin-test-token-that-is-long-enough"),
        clock=clock,
        rand=random.Random(2).random,
    )
    yield create_app(ctx=ctx).test_client()
    ctx.close()


def register(client: FlaskClient, key: str, gid: str) -> str:
    response = client.post(
        "/v1/payments",
        json={
            "merchant_reference": gid,
            "gateway": "simulator",
            "amount": 10,
            "currency": "USD",
            "gateway_payment_id": gid,
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201
    payment_id: str = response.json["id"]
    return payment_id


def test_admin_endpoints_are_off_without_a_token(client: FlaskClient) -> None:
    response = client.get("/admin/payments", headers=ADMIN)
    assert response.status_code == 404
    assert response.content_type == "application/problem+json"


def test_a_wrong_admin_token_is_401(admin_client: FlaskClient) -> None:
    assert admin_client.get("/admin/payments").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert admin_client.get("/admin/payments", headers=wrong).status_code == 401


def test_an_operator_resolves_a_conflict_flagged_for_review(
    admin_client: FlaskClient, db_url: str
) -> None:
    app_ctx = admin_client.application.extensions["reconciler"]
    _, key = create_merchant(app_ctx, "acme")
    pid = register(admin_client, key, "sim_pay_admin")
    first = admin_client.post(
        f"/admin/payments/{pid}/report",
        json={"status": "succeeded", "note": "seen captured on the dashboard"},
        headers=ADMIN,
    )
    assert first.json["outcome"] == "applied"
    conflict = admin_client.post(
        f"/admin/payments/{pid}/report",
        json={"status": "failed", "note": "support says it failed"},
        headers=ADMIN,
    )
    assert conflict.json["outcome"] == "conflict"
    assert conflict.json["payment"]["status"] == "succeeded"  # captured money is kept
    flagged = admin_client.get("/admin/payments?sync_state=needs_review", headers=ADMIN).json
    assert [p["id"] for p in flagged["data"]] == [pid]
    missing_note = admin_client.post(f"/admin/payments/{pid}/resolve", json={}, headers=ADMIN)
    assert missing_note.status_code == 400
    resolved = admin_client.post(
        f"/admin/payments/{pid}/resolve", json={"note": "checked with the bank"}, headers=ADMIN
    )
    assert resolved.status_code == 200
    # One answer shape for report and resolve.
    assert set(resolved.json) == set(conflict.json) == {"outcome", "resolved", "payment"}
    assert (resolved.json["outcome"], resolved.json["resolved"]) == ("resolved", True)
    assert conflict.json["resolved"] is False  # the rules refused `failed`: still in review
    assert resolved.json["payment"]["sync"]["state"] == "settled"
    assert resolved.json["payment"]["review_reason"] is None
    timeline = admin_client.get(f"/admin/payments/{pid}/events", headers=ADMIN).json["data"]
    merchants_view = admin_client.get(
        f"/v1/payments/{pid}/events", headers={"Authorization": f"Bearer {key}"}
    ).json["data"]
    assert timeline == merchants_view
    assert [(e["source"], e["outcome"]) for e in timeline] == [
        ("api", "registered"),
        ("admin", "applied"),
        ("admin", "conflict"),
        ("admin", "resolved"),
    ]


def test_admin_refresh_and_bad_input(admin_client: FlaskClient) -> None:
    app_ctx = admin_client.application.extensions["reconciler"]
    _, key = create_merchant(app_ctx, "acme")
    pid = register(admin_client, key, "sim_pay_admin2")
    assert admin_client.post(f"/admin/payments/{pid}/refresh", headers=ADMIN).status_code == 202
    assert admin_client.post("/admin/payments/pay_nope/refresh", headers=ADMIN).status_code == 404
    bad = admin_client.post(
        f"/admin/payments/{pid}/report", json={"status": "paid", "note": "x"}, headers=ADMIN
    )
    assert bad.status_code == 400
    not_flagged = admin_client.post(
        f"/admin/payments/{pid}/resolve", json={"note": "x"}, headers=ADMIN
    )
    assert not_flagged.status_code == 400
    assert admin_client.get("/admin/payments?sync_state=weird", headers=ADMIN).status_code == 400


def test_the_openapi_document_describes_admin_endpoints_only_when_they_are_on(
    client: FlaskClient, admin_client: FlaskClient
) -> None:
    off = client.get("/openapi.json").json["paths"]
    on = admin_client.get("/openapi.json").json["paths"]
    assert not any(path.startswith("/admin") for path in off)
    assert {"/admin/payments", "/admin/payments/{payment_id}/resolve"} <= set(on)


def test_an_admin_400_lists_every_invalid_field_and_parameter(admin_client: FlaskClient) -> None:
    app_ctx = admin_client.application.extensions["reconciler"]
    _, key = create_merchant(app_ctx, "acme")
    pid = register(admin_client, key, "sim_pay_admin3")
    bad = admin_client.post(
        f"/admin/payments/{pid}/report",
        json={"status": "paid", "gateway_status": "\udc00", "why": "typo"},
        headers=ADMIN,
    )
    assert bad.status_code == 400
    assert bad.json["instance"] == f"/admin/payments/{pid}/report"
    assert [e["field"] for e in bad.json["errors"]] == ["status", "gateway_status", "note", "why"]
    query = admin_client.get("/admin/payments?sync_state=weird&limit=0&stat=x", headers=ADMIN)
    assert [e["field"] for e in query.json["errors"]] == ["sync_state", "limit", "stat"]
    assert admin_client.get("/admin/payments?sync_state=", headers=ADMIN).status_code == 200
