"""What a gateway sends is checked before use: strict JSON, ids, times and numbers in range."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reconciler.adapters.gateways import checks
from reconciler.adapters.gateways.base import MalformedWebhook


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 30000,
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b'{"a":' * 40 + b"1" + b"}" * 40,  # under the recursion limit, over ours
        b'{"n": NaN}',
        b'{"n": Infinity}',
        b'{"n": -Infinity}',
        b'{"n": 1e999}',
        b'{"n": ' + b"9" * 400 + b"}",
        b'{"n": ' + b"9" * 5000 + b"}",
        b'{"s": "\\u0000"}',
        b'{"s": "\\udc00"}',
        b'{"\\ud800": 1}',  # in a key, too
        b"\xff\xfe",
        b"[]",
        b'"text"',
    ],
)
def test_a_body_that_is_not_a_sane_json_object_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedWebhook):
        checks.load_object(body)


def test_a_sane_body_is_read_as_it_is() -> None:
    body = b'{"id": "evt_1", "n": [1, 2.5, null, true], "s": "\\u00e9\\ud83d\\ude00"}'
    assert checks.load_object(body) == {"id": "evt_1", "n": [1, 2.5, None, True], "s": "é😀"}


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("1795860000", True),
        (" 1795860000 ", True),
        ("9" * 13, False),
        ("9" * 5000, False),
        ("-1", False),
        ("１２３", False),  # fullwidth digits are digits to str.isdigit, not to a gateway
        ("", False),
    ],
)
def test_timestamp_headers_are_at_most_twelve_ascii_digits(value: str, ok: bool) -> None:
    if ok:
        assert checks.epoch_header(value, "t") == int(value)
    else:
        with pytest.raises(MalformedWebhook):
            checks.epoch_header(value, "t")


@pytest.mark.parametrize(
    "value", [10**20, -(10**12), 2**63, 946684799, 4102444800, 1.5, True, "1795860000", None]
)
def test_epoch_seconds_outside_2000_to_2100_or_not_integers_are_malformed(value: object) -> None:
    with pytest.raises(MalformedWebhook):
        checks.epoch_seconds(value, "created")


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+05:00",  # cannot even be shifted to UTC
        "9999-12-31T23:59:59-05:00",
        "1999-12-31T23:59:59Z",
        "2026-11-28T10:00:00",  # no offset
        "yesterday",
        5,
    ],
)
def test_rfc3339_times_must_carry_an_offset_and_lie_in_2000_to_2100(value: object) -> None:
    with pytest.raises(MalformedWebhook):
        checks.rfc3339(value, "updated_at")


def test_an_rfc3339_time_with_an_offset_is_read_as_utc() -> None:
    moment = checks.rfc3339("2026-11-28T15:30:00+05:30", "updated_at")
    assert moment == datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", ["", "a" * 201, "pay\x00", "pay é", "pay\n1", 7, None])
def test_ids_are_one_to_two_hundred_printable_ascii_characters(value: object) -> None:
    with pytest.raises(MalformedWebhook):
        checks.identifier(value, "id")


def test_only_known_scalar_fields_in_range_are_kept() -> None:
    source = {
        "amount": 1000,
        "currency": "EUR",
        "huge": 2**60,
        "flag": True,
        "nested": {"card": "4242424242424242"},
        "card_number": "4242424242424242",
        "long": "x" * 1000,
    }
    kept = checks.known_fields(source, ("amount", "currency", "huge", "flag", "nested", "long"))
    assert kept == {"amount": 1000, "currency": "EUR", "long": "x" * checks.MAX_TEXT}
