"""The bounded JSON decoder: depth measured outside strings, numbers in range, no repeats."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.entrypoints.jsonbody import MAX_DEPTH, BodyError, decode, nesting

# Strings full of what a naive bracket count would trip on.
TRICKY_TEXT = st.text(alphabet=st.sampled_from('[]{}"\\ab\u00e9'), max_size=12)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(item) for item in value.values()), default=0)
    return 0


def json_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY_TEXT, inner, max_size=3),
        max_leaves=12,
    )


@st.composite
def nested_values(draw: st.DrawFn) -> Any:
    """A JSON value wrapped in up to twice MAX_DEPTH arrays and objects."""
    value = draw(json_values(st.none() | st.integers() | TRICKY_TEXT))
    for wrap_in_list in draw(st.lists(st.booleans(), max_size=2 * MAX_DEPTH)):
        value = [value] if wrap_in_list else {draw(TRICKY_TEXT): value}
    return value


@given(nested_values())
def test_nesting_is_the_real_depth_whenever_it_matters(value: Any) -> None:
    raw = json.dumps(value).encode()
    assert (nesting(raw) > MAX_DEPTH) == (depth(value) > MAX_DEPTH)


@given(nested_values())
def test_a_body_within_the_depth_limit_decodes_as_json_does(value: Any) -> None:
    raw = json.dumps(value).encode()
    if depth(value) > MAX_DEPTH:
        with pytest.raises(BodyError, match="nested deeper"):
            decode(raw)
    else:
        assert decode(raw) == json.loads(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[" * 30_000, "nested deeper"),
        (b'{"a": ' * 33 + b"1" + b"}" * 33, "nested deeper"),
        (b"1e999", "out of range"),
        (b"-1e400", "out of range"),
        (b"NaN", "not a JSON number"),
        (b"[-Infinity]", "not a JSON number"),
        (b"9" * 41, "more than 40 characters"),
        (b'{"a": 1, "a": 1}', "repeats a key"),
        (b'{"a": {"b": 1, "b": 2}}', "repeats a key"),
        (b"\xc3\x28", "UTF-8"),
        (b"{", "valid JSON"),
        (b"", "valid JSON"),
    ],
)
def test_bodies_past_a_bound_are_refused_with_a_reason(raw: bytes, message: str) -> None:
    with pytest.raises(BodyError, match=message):
        decode(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'["' + b"[" * 100 + b'"]',  # brackets inside a string do not nest
        b'{"k\\"[[[": "\\\\' + b"{" * 50 + b'"}',  # escaped quote, then an escaped backslash
        b"[" * MAX_DEPTH + b"]" * MAX_DEPTH,
    ],
)
def test_brackets_inside_strings_and_the_limit_itself_are_accepted(raw: bytes) -> None:
    assert decode(raw) == json.loads(raw)
