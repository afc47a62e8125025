"""Crafted input to the merchant and admin APIs: always a 4xx problem, never a 5xx.

Nested and huge bodies, numbers out of range, NUL, control characters and lone surrogates in
bodies, ids and cursors — on SQLite and on PostgreSQL, where a NUL that reached a query
would be a DataError.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.app import MerchantAuth, make_settings, register_payment
from support.clock import FakeClock
from support.simulator import Simulator
from werkzeug.test import TestResponse

from reconciler.bootstrap import bootstrap
from reconciler.entrypoints.app import create_app
from reconciler.services.merchants import create_merchant

ADMIN = {"Authorization": "Bearer admin-test-token"}


@dataclass
class Service:
    client: FlaskClient
    merchant: MerchantAuth
    payment_id: str

    def post(self, path: str, data: bytes) -> TestResponse:
        headers = ADMIN if path.startswith("/admin/") else self.merchant.headers
        return self.client.post(path, data=data, headers=headers, content_type="application/json")


@pytest.fixture
def service(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[Service]:
    ctx = bootstrap(
        make_settings(db_url, simulator.url, admin_token="admin-test-token"),
        clock=clock,
        rand=random.Random(3).random,
    )
    client = create_app(ctx=ctx).test_client()
    record, key = create_merchant(ctx, "acme")
    merchant = MerchantAuth(record.id, key)
    yield Service(client, merchant, register_payment(client, merchant, "sim_pay_hostile"))
    ctx.close()


def assert_problem(response: TestResponse, status: int, path: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    problem: dict[str, Any] = response.json
    assert problem["status"] == status
    assert problem["instance"] == path
    return problem


VALID = {
    "/v1/payments": {
        "merchant_reference": "order-1",
        "gateway": "simulator",
        "amount": 49900,
        "currency": "INR",
        "gateway_payment_id": "sim_pay_1",
    },
    "/admin/payments/{id}/report": {"status": "failed", "gateway_status": "x", "note": "seen"},
    "/admin/payments/{id}/resolve": {"note": "checked with the bank"},
}
BODY_PATHS = list(VALID)


# Each test below walks its whole table: a fresh database per case is costly on PostgreSQL.
HOSTILE_BODIES = [
    b"[" * 30_000,  # unbalanced, and far deeper than Python's recursion limit
    b"[" * 30_000 + b"]" * 30_000,
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000,  # 60 KB: under the size limit
    b'{"note": ' + b"[" * 40 + b"]" * 40 + b"}",  # just past the depth limit, in a field
    b'{"note": "x", "note": "y"}',  # two readers could take either value
    b'{"amount": 1e999}',
    b'{"amount": -1e999}',
    b'{"amount": NaN}',
    b'{"amount": Infinity}',
    b'{"amount": ' + b"9" * 5_000 + b"}",
    b"\xff\xfe{}",  # not UTF-8
    b"",
    b"null",
    b"[]",
    b'"\\udc00"',
]


@pytest.mark.parametrize("path", BODY_PATHS)
def test_nested_huge_and_odd_bodies_are_400_problems(service: Service, path: str) -> None:
    path = path.format(id=service.payment_id)
    for raw in HOSTILE_BODIES:
        problem = assert_problem(service.post(path, raw), 400, path)
        assert problem["errors"], raw[:40]


@pytest.mark.parametrize(
    ("path", "change", "field"),
    [
        ("/admin/payments/{id}/report", {"gateway_status": "\udc00"}, "gateway_status"),
        ("/admin/payments/{id}/report", {"gateway_status": "x" * 65}, "gateway_status"),
        ("/admin/payments/{id}/report", {"gateway_status": {"a": [1]}}, "gateway_status"),
        ("/admin/payments/{id}/report", {"status": "paid"}, "status"),
        ("/admin/payments/{id}/report", {"note": "\x00"}, "note"),
        ("/admin/payments/{id}/report", {"note": " \n "}, "note"),
        ("/admin/payments/{id}/resolve", {"note": "why\ud800"}, "note"),
        ("/admin/payments/{id}/resolve", {"\udc00": 1}, "\\udc00"),
        ("/v1/payments", {"amount": 2**70}, "amount"),
        ("/v1/payments", {"gateway_payment_id": "\x00"}, "gateway_payment_id"),
    ],
)
def test_odd_fields_are_400_problems_naming_the_field(
    service: Service, path: str, change: dict[str, Any], field: str
) -> None:
    path = path.format(id=service.payment_id)
    raw = json.dumps(VALID[path.replace(service.payment_id, "{id}")] | change).encode()
    problem = assert_problem(service.post(path, raw), 400, path)
    assert [e["field"] for e in problem["errors"]] == [field]


def test_an_operators_note_may_span_lines(service: Service) -> None:
    path = f"/admin/payments/{service.payment_id}/report"
    body = {"status": "failed", "note": "seen on the dashboard\n\tby the on-call engineer"}
    response = service.post(path, json.dumps(body).encode())
    assert response.status_code == 200, response.json


ODD_IDS = ["%00", "pay%00", "%ED%B0%80", "%C0%80", "pay_%0A", "x" * 65, "pay%20x", "%F0%9F%92%B3"]


@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("GET", "/v1/payments/{}"),
        ("GET", "/v1/payments/{}/events"),
        ("POST", "/v1/payments/{}/refresh"),
        ("GET", "/admin/payments/{}"),
        ("POST", "/admin/payments/{}/refresh"),
        ("POST", "/admin/payments/{}/report"),
        ("POST", "/admin/payments/{}/resolve"),
    ],
)
def test_odd_ids_in_paths_are_404_problems_before_any_query(
    service: Service, method: str, template: str
) -> None:
    headers = ADMIN if template.startswith("/admin/") else service.merchant.headers
    for odd in ODD_IDS:
        response = service.client.open(template.format(odd), method=method, headers=headers)
        assert response.status_code == 404, (odd, response.get_data(as_text=True))
        assert response.content_type == "application/problem+json"
        assert response.json["detail"] == "no payment with this id"


FORGED_CURSORS = [
    b"2026-11-28T10:00:00+00:00|\x00",
    b"2026-11-28T10:00:00+00:00|pay\x00x",
    b"2026-11-28T10:00:00+00:00|\xed\xb0\x80",
    b"2026-11-28T10:00:00+00:00|",
    b"2026-11-28T10:00:00|pay_1",  # no zone
    b"\x00|pay_1",
]


@pytest.mark.parametrize("path", ["/v1/payments", "/admin/payments"])
def test_forged_cursors_are_400_problems(service: Service, path: str) -> None:
    headers = ADMIN if path.startswith("/admin/") else service.merchant.headers
    for decoded in FORGED_CURSORS:
        cursor = base64.urlsafe_b64encode(decoded).decode()
        response = service.client.get(f"{path}?cursor={cursor}", headers=headers)
        assert_problem(response, 400, path)


# Hypothesis: a valid body with one field made hostile, random keys, or random bytes.

# Just past the depth limit, and past Python's own recursion limit (about 1 000).
DEEP = st.one_of(st.integers(33, 64), st.integers(1_000, 9_000)).flatmap(
    lambda depth: st.sampled_from(
        ["[" * depth + "]" * depth, '{"a":' * depth + "0" + "}" * depth, "[" * depth]
    )
)
NUMBERS = st.one_of(
    st.sampled_from(["1e999", "-1e999", "NaN", "Infinity", "-Infinity", str(2**70), "1e20"]),
    st.integers(41, 4_000).map(lambda n: "9" * n),
    st.integers(max_value=0).map(str),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()).map(repr),
)
ODD_CHARACTERS = st.sampled_from(
    ["\x00", "\x07", "\n", "\x7f", "\x85", "\u00ad", "\u200b", "\u202e", "\u2028", "\ufeff"]
    + ["\ud800", "\udbff", "\udc00", "\udfff"]
)
ODD_TEXT = st.tuples(st.text(max_size=20), ODD_CHARACTERS, st.text(max_size=20)).map(
    lambda parts: json.dumps("".join(parts))
)
WRONG_TYPES = st.sampled_from(["true", "false", "{}", "[]", '{"a": [1]}', '["x"]'])
HOSTILE = st.one_of(DEEP, NUMBERS, ODD_TEXT, WRONG_TYPES)


@st.composite
def hostile_bodies(draw: st.DrawFn, valid: dict[str, Any]) -> bytes:
    """A valid body with one field (known or not) set to a hostile JSON fragment."""
    field = draw(st.one_of(st.sampled_from(sorted(valid)), st.text(min_size=1, max_size=30)))
    fragments = {name: json.dumps(value) for name, value in valid.items()}
    fragments[field] = draw(HOSTILE)
    members = ", ".join(f"{json.dumps(name)}: {value}" for name, value in fragments.items())
    return ("{" + members + "}").encode("utf-8", "surrogatepass")


def any_json() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )


@given(data=st.data())
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_hostile_bodies_to_the_merchant_and_admin_apis_are_400_problems(
    service: Service, data: st.DataObject
) -> None:
    template = data.draw(st.sampled_from(BODY_PATHS), label="path")
    path = template.format(id=service.payment_id)
    raw = data.draw(
        st.one_of(
            hostile_bodies(VALID[template]),
            # Random JSON cannot be valid here: every body has a required text field.
            any_json().map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
            st.binary(max_size=300),
        ),
        label="body",
    )
    response = service.post(path, raw)
    problem = assert_problem(response, 400, path)
    assert problem["errors"], problem
