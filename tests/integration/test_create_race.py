"""Identical concurrent registrations: one payment, and every answer a 201 or a 200."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from support.app import MerchantAuth

from reconciler.adapters.models import Payment
from reconciler.bootstrap import Context

REQUESTS = 50


@pytest.mark.parametrize("tracked", [True, False], ids=["existing-gateway-id", "reference-only"])
def test_fifty_identical_registrations_get_one_payment_and_no_conflict(
    app: Flask, ctx: Context, merchant: MerchantAuth, tracked: bool
) -> None:
    body: dict[str, object] = {
        "merchant_reference": "order-race",
        "gateway": "simulator",
        "amount": 2500,
        "currency": "INR",
    }
    if tracked:
        body["gateway_payment_id"] = "sim_race_1"
    start = threading.Barrier(REQUESTS)

    def post(_: int) -> tuple[int, str]:
        client = app.test_client()
        start.wait()
        response = client.post("/v1/payments", json=body, headers=merchant.headers)
        return response.status_code, str((response.json or {}).get("id"))

    with ThreadPoolExecutor(REQUESTS) as pool:
        answers = list(pool.map(post, range(REQUESTS)))
    codes = Counter(code for code, _ in answers)
    assert codes[201] == 1, codes
    assert codes[200] == REQUESTS - 1, codes
    assert len({pid for _, pid in answers}) == 1
    with ctx.read() as session:
        assert session.query(Payment).count() == 1


def test_merchants_racing_for_one_gateway_payment_get_one_tracking_row(
    app: Flask, ctx: Context, merchant: MerchantAuth, other_merchant: MerchantAuth
) -> None:
    """On the shared account each gets a 201; one row tracks the payment, the other shadows."""
    start = threading.Barrier(REQUESTS)
    merchants = [merchant, other_merchant]

    def post(n: int) -> int:
        who = merchants[n % 2]
        body = {
            "merchant_reference": f"order-{n}",
            "gateway": "simulator",
            "amount": 2500,
            "currency": "INR",
            "gateway_payment_id": "sim_race_shared",
        }
        start.wait()
        return app.test_client().post("/v1/payments", json=body, headers=who.headers).status_code

    with ThreadPoolExecutor(REQUESTS) as pool:
        codes = Counter(pool.map(post, range(REQUESTS)))
    # One row per merchant (the rest name the same gateway payment under another
    # reference of the merchant's own: a conflict with its own row, never a 500).
    assert codes == {201: 2, 409: REQUESTS - 2}, codes
    with ctx.read() as session:
        rows = session.query(Payment).all()
    assert sorted(row.shadow for row in rows) == [False, True]
    assert {row.merchant_id for row in rows} == {merchant.id, other_merchant.id}
