"""No input to `/webhooks/{gateway}` gives a 5xx: signed garbage, hostile headers, odd numbers.

The fuzz tests sign what they generate with the test secrets, so the garbage gets past the
signature check and reaches the parsers; the header fuzz attacks the signature schemes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.clock import FakeClock
from support.edge import TRACKED, edge_app, edge_context, post, signed

from reconciler.adapters.models import Payment
from reconciler.bootstrap import Context

FUZZ = settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def edge(db_url: str, clock: FakeClock) -> Iterator[tuple[Context, Flask, dict[str, str]]]:
    with edge_context(db_url, clock) as ctx:
        app, headers = edge_app(ctx)
        yield ctx, app, headers


def now_s(clock: FakeClock) -> int:
    return int(clock.now.timestamp())


def simulator_event(**data: Any) -> dict[str, Any]:
    fields = {"id": TRACKED["simulator"], "status": "succeeded"}
    fields["updated_at"] = "2026-11-28T09:59:00Z"
    return {"type": "payment.succeeded", "data": {**fields, **data}}


def stripe_event(created: Any = 1_795_860_000, **intent: Any) -> dict[str, Any]:
    obj = {"id": TRACKED["stripe"], "object": "payment_intent", "status": "succeeded", **intent}
    return {
        "id": "evt_edge_1",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": created,
        "data": {"object": obj},
    }


def razorpay_event(created_at: Any = 1_795_860_000, **entity: Any) -> dict[str, Any]:
    payment = {"id": TRACKED["razorpay"], "entity": "payment", "status": "captured", **entity}
    return {
        "entity": "event",
        "event": "payment.captured",
        "created_at": created_at,
        "payload": {"payment": {"entity": payment}},
    }


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


def raw(text: str) -> Callable[[], bytes]:
    return lambda: text.encode()


def dumped(event: dict[str, Any]) -> Callable[[], bytes]:
    return lambda: json.dumps(event).encode()


# Signed bodies that make no sense: each is refused with a 400 and changes no payment.
NONSENSE = [
    ("simulator", dumped(simulator_event(updated_at="0001-01-01T00:00:00+05:00"))),
    ("simulator", dumped(simulator_event(updated_at="9999-12-31T23:59:59-05:00"))),
    ("simulator", raw('{"type":"payment.succeeded","data":{"id":"x","amount":1e999}}')),
    ("simulator", dumped(simulator_event(id="\udc00"))),  # json escapes it as \udc00
    ("simulator", dumped(simulator_event(id="sim\x00edge"))),
    ("simulator", dumped(simulator_event(status="s" * 65))),
    ("simulator", dumped(simulator_event(extra=nested(40)))),
    ("simulator", raw("[" * 30000)),
    ("simulator", raw('{"type":"payment.succeeded","data":' + "{" * 5000)),
    ("simulator", raw('{"type":"payment.succeeded","data":{"id":NaN}}')),
    ("simulator", raw('{"type":"payment.x","data":{},"n":' + "9" * 5000 + "}")),
    ("stripe", dumped(stripe_event(created=10**20))),
    ("stripe", dumped(stripe_event(created=-(10**12)))),
    ("stripe", dumped(stripe_event(created=2**63))),
    ("stripe", raw(json.dumps(stripe_event()).replace("1795860000", "1e20"))),
    ("stripe", dumped(stripe_event(id="pi_\udcff"))),
    ("stripe", dumped(stripe_event(last_payment_error={"message": nested(50)}))),
    ("razorpay", dumped(razorpay_event(created_at=10**20))),
    ("razorpay", raw(json.dumps(razorpay_event()).replace("1795860000", "1e20"))),
    ("razorpay", dumped(razorpay_event(id="pay\x00"))),
    ("razorpay", dumped(razorpay_event(amount_refunded=float("inf")))),  # dumps: Infinity
]


@pytest.mark.parametrize(("gateway", "body"), NONSENSE)
def test_a_signed_body_that_makes_no_sense_is_a_400_and_changes_nothing(
    edge: tuple[Context, Flask, dict[str, str]],
    clock: FakeClock,
    gateway: str,
    body: Callable[[], bytes],
) -> None:
    ctx, app, _ = edge
    payload = body()
    response = post(
        app.test_client(), gateway, payload, signed(gateway, payload, now_s(clock), "e1")
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    with ctx.read() as session:
        statuses = {p.gateway: p.status for p in session.query(Payment)}
    assert statuses == dict.fromkeys(TRACKED, "pending")


@pytest.mark.parametrize("digits", [13, 400, 5000])
def test_a_huge_simulator_timestamp_header_is_a_400(
    edge: tuple[Context, Flask, dict[str, str]], digits: int
) -> None:
    _, app, _ = edge
    headers = {
        "webhook-id": "m1",
        "webhook-timestamp": "9" * digits,
        "webhook-signature": "v1,AA==",
    }
    response = post(app.test_client(), "simulator", b"{}", headers)
    assert response.status_code == 400


@pytest.mark.parametrize("digits", [13, 400, 5000])
def test_a_huge_stripe_timestamp_is_a_400(
    edge: tuple[Context, Flask, dict[str, str]], digits: int
) -> None:
    _, app, _ = edge
    headers = {"Stripe-Signature": f"t={'9' * digits},v1=00"}
    response = post(app.test_client(), "stripe", b"{}", headers)
    assert response.status_code == 400


def test_the_timeline_shows_only_known_fields_and_standard_json(
    edge: tuple[Context, Flask, dict[str, str]], clock: FakeClock
) -> None:
    ctx, app, auth = edge
    client = app.test_client()
    body = json.dumps(
        simulator_event(card_number="4242424242424242", amount=1000, currency="EUR")
    ).encode()
    response = post(client, "simulator", body, signed("simulator", body, now_s(clock), "m-card"))
    assert response.status_code == 200, response.json
    with ctx.read() as session:
        payment_id = session.query(Payment).filter_by(gateway="simulator").one().id
    events = client.get(f"/v1/payments/{payment_id}/events", headers=auth)
    text = events.get_data(as_text=True)
    assert "4242424242424242" not in text
    applied = [e for e in events.json["data"] if e.get("gateway_event_id") == "m-card"]
    assert applied and "card_number" not in json.dumps(applied[0])


def strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


# Any JSON value, including what json.dumps writes but standard JSON has not (NaN, Infinity).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["\x00", "\udc00", "4242424242424242", "0001-01-01T00:00:00+05:00"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=15,
)


def maybe(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(plausible, json_values)


STATUS_WORDS = st.sampled_from(
    ["succeeded", "failed", "canceled", "processing", "captured", "authorized", "paid"]
)
TIMES = st.integers(min_value=-(2**64), max_value=2**64) | st.just(1_795_860_000)
RFC3339 = st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())

SIMULATOR_BODIES = st.fixed_dictionaries(
    {
        "type": maybe(st.sampled_from(["payment.succeeded", "payment.failed", "refund.x"])),
        "data": maybe(
            st.fixed_dictionaries(
                {
                    "id": maybe(st.just(TRACKED["simulator"])),
                    "status": maybe(STATUS_WORDS),
                    "updated_at": maybe(RFC3339),
                    "amount": json_values,
                }
            )
        ),
    }
)
STRIPE_BODIES = st.fixed_dictionaries(
    {
        "id": maybe(st.just("evt_fuzz")),
        "object": maybe(st.just("event")),
        "type": maybe(st.sampled_from(["payment_intent.succeeded", "charge.refunded"])),
        "created": maybe(TIMES),
        "data": maybe(
            st.fixed_dictionaries(
                {
                    "object": maybe(
                        st.fixed_dictionaries(
                            {
                                "id": maybe(st.just(TRACKED["stripe"])),
                                "status": maybe(STATUS_WORDS),
                                "last_payment_error": json_values,
                            }
                        )
                    )
                }
            )
        ),
    }
)
RAZORPAY_BODIES = st.fixed_dictionaries(
    {
        "entity": maybe(st.just("event")),
        "event": maybe(st.sampled_from(["payment.captured", "payment.failed", "order.paid"])),
        "created_at": maybe(TIMES),
        "payload": maybe(
            st.fixed_dictionaries(
                {
                    "payment": maybe(
                        st.fixed_dictionaries(
                            {
                                "entity": maybe(
                                    st.fixed_dictionaries(
                                        {
                                            "id": maybe(st.just(TRACKED["razorpay"])),
                                            "status": maybe(STATUS_WORDS),
                                            "amount_refunded": json_values,
                                            "error_description": json_values,
                                        }
                                    )
                                )
                            }
                        )
                    )
                }
            )
        ),
    }
)
RAW_BODIES = st.binary(max_size=200) | st.text(max_size=200).map(
    lambda t: t.encode("utf-8", "surrogatepass")
)


# What an HTTP header can carry at all (the test client refuses the rest).
HEADER_SAFE_TEXT = st.text(
    alphabet=st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=30
)


def body_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def assert_no_5xx_and_a_readable_timeline(app: Flask, auth: dict[str, str], response: Any) -> None:
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    client = app.test_client()
    for payment in client.get("/v1/payments", headers=auth).json["data"]:
        events = client.get(f"/v1/payments/{payment['id']}/events", headers=auth)
        assert events.status_code == 200
        strict_json(events.get_data(as_text=True))


@pytest.mark.parametrize(
    ("gateway", "bodies"),
    [
        ("simulator", SIMULATOR_BODIES | RAW_BODIES),
        ("stripe", STRIPE_BODIES | RAW_BODIES),
        ("razorpay", RAZORPAY_BODIES | RAW_BODIES),
    ],
)
def test_signed_garbage_never_gives_a_5xx(
    edge: tuple[Context, Flask, dict[str, str]],
    clock: FakeClock,
    gateway: str,
    bodies: st.SearchStrategy[Any],
) -> None:
    _, app, auth = edge
    client = app.test_client()
    counter = iter(range(10**9))

    @FUZZ
    @given(body=bodies, event_id=HEADER_SAFE_TEXT)
    def check(body: Any, event_id: str) -> None:
        payload = body_bytes(body)
        headers = signed(gateway, payload, now_s(clock), f"{event_id}-{next(counter)}")
        response = post(client, gateway, payload, headers)
        assert_no_5xx_and_a_readable_timeline(app, auth, response)

    check()


HEADER_TEXT = st.text(
    alphabet=st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=120
) | st.sampled_from(["9" * 5000, "t=" + "9" * 500 + ",v1=00", "v1,", "v1," + "A" * 3000, ""])

HEADER_NAMES = {
    "simulator": ["webhook-id", "webhook-timestamp", "webhook-signature"],
    "stripe": ["Stripe-Signature"],
    "razorpay": ["X-Razorpay-Signature", "x-razorpay-event-id"],
}


@pytest.mark.parametrize("gateway", sorted(HEADER_NAMES))
def test_hostile_signature_headers_are_a_400_or_401(
    edge: tuple[Context, Flask, dict[str, str]], clock: FakeClock, gateway: str
) -> None:
    _, app, _ = edge
    client = app.test_client()
    body = json.dumps(simulator_event()).encode()
    valid = signed(gateway, body, now_s(clock), "evt-header-fuzz")

    @FUZZ
    @given(
        replaced=st.dictionaries(st.sampled_from(HEADER_NAMES[gateway]), HEADER_TEXT, min_size=1)
    )
    def check(replaced: dict[str, str]) -> None:
        headers = {**valid, **replaced}
        response = post(client, gateway, body, headers)
        assert response.status_code in (200, 400, 401), response.get_data(as_text=True)

    check()
