"""Crafted input to the merchant (payments, webhook endpoints) and admin APIs: a 4xx problem.

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

ADMIN = {"Authorization": "Bearer admin-test-token-that-is-long-enough"}
ENDPOINT_URL = "http://127.0.0.1:9/hooks"  # nothing listens; no delivery is attempted here


@dataclass
class Service:
    client: FlaskClient
    merchant: MerchantAuth
    payment_id: str
    endpoint_id: str

    def path(self, template: str) -> str:
        """Fill a path template with the ids of this service's payment and endpoint."""
        return template.format(id=self.payment_id, endpoint=self.endpoint_id)

    def send(self, template: str, data: bytes) -> tuple[str, TestResponse]:
        """Send a body to a route (by its template), with the credentials it takes."""
        path = self.path(template)
        headers = ADMIN if path.startswith("/admin/") else self.merchant.headers
        response = self.client.open(
            path,
            method=METHODS.get(template, "POST"),
            data=data,
            headers=headers,
            content_type="application/json",
        )
        return path, response


@pytest.fixture
def service(db_url: str, simulator: Simulator, clock: FakeClock) -> Iterator[Service]:
    ctx = bootstrap(
        make_settings(
            db_url,
            simulator.url,
            admin_token="admin-test-token-that-is-long-enough",
            notify_allow_private=1,
        ),
        clock=clock,
        rand=random.Random(3).random,
    )
    client = create_app(ctx=ctx).test_client()
    record, key = create_merchant(ctx, "acme")
    merchant = MerchantAuth(record.id, key)
    payment_id = register_payment(client, merchant, "sim_pay_hostile")
    created = client.post(
        "/v1/webhook_endpoints", json={"url": ENDPOINT_URL}, headers=merchant.headers
    )
    assert created.status_code == 201, created.json
    yield Service(client, merchant, payment_id, created.json["id"])
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
    "/v1/webhook_endpoints": {
        "url": ENDPOINT_URL,
        "events": ["payment.failed"],
        "description": "orders service",
    },
    "/v1/webhook_endpoints/{endpoint}": {"url": ENDPOINT_URL, "description": "orders service"},
    "/v1/webhook_endpoints/{endpoint}/recover": {"since": "2026-11-28T09:00:00Z"},
}
METHODS = {"/v1/webhook_endpoints/{endpoint}": "PATCH"}  # the others are POSTs
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


@pytest.mark.parametrize("template", BODY_PATHS)
def test_nested_huge_and_odd_bodies_are_400_problems(service: Service, template: str) -> None:
    for raw in HOSTILE_BODIES:
        path, response = service.send(template, raw)
        problem = assert_problem(response, 400, path)
        assert problem["errors"], raw[:40]


# Resolving needs a payment flagged for review (the admin tests cover it); the rest must
# take their valid body, or every refusal in these tables could be for one dull reason.
@pytest.mark.parametrize("template", [t for t in BODY_PATHS if not t.endswith("/resolve")])
def test_the_valid_bodies_of_these_tables_are_accepted(service: Service, template: str) -> None:
    _, response = service.send(template, json.dumps(VALID[template]).encode())
    assert response.status_code in {200, 201, 202}, response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("template", "change", "field"),
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
        ("/v1/webhook_endpoints", {"url": ENDPOINT_URL + "\x00"}, "url"),
        ("/v1/webhook_endpoints", {"url": "https://" + "a" * 2048}, "url"),
        ("/v1/webhook_endpoints", {"url": ["https://example.com/"]}, "url"),
        ("/v1/webhook_endpoints", {"description": "orders\ud800"}, "description"),
        ("/v1/webhook_endpoints", {"events": ["payment.failed\x00"]}, "events.0"),
        ("/v1/webhook_endpoints", {"events": "payment.failed"}, "events"),
        ("/v1/webhook_endpoints/{endpoint}", {"url": None}, "url"),
        ("/v1/webhook_endpoints/{endpoint}", {"status": "enabled\u200b"}, "status"),
        ("/v1/webhook_endpoints/{endpoint}", {"\udc00": 1}, "\\udc00"),
        ("/v1/webhook_endpoints/{endpoint}/recover", {"since": 1764320400}, "since"),
        ("/v1/webhook_endpoints/{endpoint}/recover", {"since": "1764320400"}, "since"),
        ("/v1/webhook_endpoints/{endpoint}/recover", {"since": "2026-11-28\x00T09:00Z"}, "since"),
    ],
)
def test_odd_fields_are_400_problems_naming_the_field(
    service: Service, template: str, change: dict[str, Any], field: str
) -> None:
    path, response = service.send(template, json.dumps(VALID[template] | change).encode())
    problem = assert_problem(response, 400, path)
    assert [e["field"] for e in problem["errors"]] == [field]


def test_an_operators_note_may_span_lines(service: Service) -> None:
    body = {"status": "failed", "note": "seen on the dashboard\n\tby the on-call engineer"}
    _, response = service.send("/admin/payments/{id}/report", json.dumps(body).encode())
    assert response.status_code == 200, response.json


ODD_IDS = ["%00", "pay%00", "%ED%B0%80", "%C0%80", "pay_%0A", "x" * 65, "pay%20x", "%F0%9F%92%B3"]


@pytest.mark.parametrize(
    ("method", "template", "detail"),
    [
        ("GET", "/v1/payments/{odd}", "no payment with this id"),
        ("GET", "/v1/payments/{odd}/events", "no payment with this id"),
        ("POST", "/v1/payments/{odd}/refresh", "no payment with this id"),
        ("GET", "/admin/payments/{odd}", "no payment with this id"),
        ("POST", "/admin/payments/{odd}/refresh", "no payment with this id"),
        ("POST", "/admin/payments/{odd}/report", "no payment with this id"),
        ("POST", "/admin/payments/{odd}/resolve", "no payment with this id"),
        ("GET", "/v1/webhook_endpoints/{odd}", "no endpoint with this id"),
        ("PATCH", "/v1/webhook_endpoints/{odd}", "no endpoint with this id"),
        ("DELETE", "/v1/webhook_endpoints/{odd}", "no endpoint with this id"),
        ("POST", "/v1/webhook_endpoints/{odd}/rotate_secret", "no endpoint with this id"),
        ("GET", "/v1/webhook_endpoints/{odd}/deliveries", "no endpoint with this id"),
        ("POST", "/v1/webhook_endpoints/{odd}/deliveries/del_1/retry", "no endpoint with this id"),
        (
            "POST",
            "/v1/webhook_endpoints/{endpoint}/deliveries/{odd}/retry",
            "no delivery with this id",
        ),
        ("POST", "/v1/webhook_endpoints/{odd}/recover", "no endpoint with this id"),
    ],
)
def test_odd_ids_in_paths_are_404_problems_before_any_query(
    service: Service, method: str, template: str, detail: str
) -> None:
    headers = ADMIN if template.startswith("/admin/") else service.merchant.headers
    for odd in ODD_IDS:
        path = template.format(odd=odd, endpoint=service.endpoint_id)
        response = service.client.open(path, method=method, headers=headers)
        assert response.status_code == 404, (odd, response.get_data(as_text=True))
        assert response.content_type == "application/problem+json"
        assert response.json["detail"] == detail


FORGED_CURSORS = [
    b"2026-11-28T10:00:00+00:00|\x00",
    b"2026-11-28T10:00:00+00:00|pay\x00x",
    b"2026-11-28T10:00:00+00:00|\xed\xb0\x80",
    b"2026-11-28T10:00:00+00:00|",
    b"2026-11-28T10:00:00|pay_1",  # no zone
    b"\x00|pay_1",
]


@pytest.mark.parametrize(
    "template", ["/v1/payments", "/v1/webhook_endpoints/{endpoint}/deliveries", "/admin/payments"]
)
def test_forged_cursors_are_400_problems(service: Service, template: str) -> None:
    path = service.path(template)
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
    raw = data.draw(
        st.one_of(
            hostile_bodies(VALID[template]),
            # Random JSON is not valid here: it names no field of the body (a PATCH that
            # names one, with a fitting value, would rightly be accepted).
            any_json()
            .filter(lambda v: not (isinstance(v, dict) and v.keys() & VALID[template].keys()))
            .map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
            st.binary(max_size=300),
        ),
        label="body",
    )
    path, response = service.send(template, raw)
    problem = assert_problem(response, 400, path)
    assert problem["errors"], problem
