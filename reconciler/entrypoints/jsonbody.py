"""Decode a JSON request body within bounds: depth, number size, no duplicate keys.

Python's `json` recurses once per nesting level (`"[" * 30000` is a RecursionError), turns
`1e999` into infinity and keeps the last of two equal keys, which another reader of the
same body may not. Each of those is a 400 here, decided before anything else sees the body.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 32
MAX_NUMBER_CHARS = 40  # far past any amount; int("9" * 5000) would cost quadratic time
_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")
_SIGNIFICANT = re.compile(rb'["\\\[\]{}]')


class BodyError(ValueError):
    """The body is not JSON this API reads."""


def decode(raw: bytes) -> Any:
    """Return the decoded body, or raise BodyError saying what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("the body must be UTF-8") from None
    if nesting(raw) > MAX_DEPTH:
        raise BodyError(f"the body is nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(
            text,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
            object_pairs_hook=_object,
        )
    except BodyError:
        raise
    except ValueError:
        raise BodyError("the body must be valid JSON") from None


def nesting(raw: bytes) -> int:
    """Return how deep arrays and objects nest in `raw`, ignoring brackets inside strings."""
    if sum(raw.count(bracket) for bracket in (b"[", b"{")) <= MAX_DEPTH:
        return 0  # cannot be too deep: skip the scan for every ordinary body
    depth = deepest = 0
    in_string = False
    escaped_at = -1
    for match in _SIGNIFICANT.finditer(raw):
        position, byte = match.start(), raw[match.start()]
        if position == escaped_at:
            continue
        if byte == ord("\\"):
            escaped_at = position + 1
        elif byte == ord('"'):
            in_string = not in_string
        elif in_string:
            continue
        elif byte in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
        elif byte in _CLOSERS:
            depth -= 1
    return deepest


def _int(digits: str) -> int:
    if len(digits) > MAX_NUMBER_CHARS:
        raise BodyError(f"a number in the body has more than {MAX_NUMBER_CHARS} characters")
    return int(digits)


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise BodyError("a number in the body is out of range")
    return value


def _constant(name: str) -> Any:
    raise BodyError(f"{name} is not a JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise BodyError("the body repeats a key in one object")
    return result
