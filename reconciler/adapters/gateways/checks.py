"""Checks on what a gateway sends: strict JSON, ids, timestamps and numbers in range.

A webhook body is signed by the gateway, but a signature proves who sent it, not that it
is sane. Everything taken from it is checked here before it reaches the status rules, a
query or a merchant's screen: garbage becomes `MalformedWebhook` (a 400), never a 500.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from reconciler.adapters.gateways.base import MalformedWebhook

MAX_DEPTH = 32  # gateway events nest a handful of levels; deeper is an attack
MAX_INT_DIGITS = 20  # 2**64 has 20 digits; money and timestamps need far fewer
MAX_SAFE_INT = 2**53  # what a JSON reader in any language keeps exactly
MAX_TEXT = 500  # a kept detail string (a decline message) longer than this is cut
ID_MAX = 200  # the id columns' width
STATUS_MAX = 64  # the gateway_status column's width
# The service's world: gateway times outside it are garbage (or a clock gone mad).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer with more than {MAX_INT_DIGITS} digits")
    return int(text)


def load_object(body: bytes) -> dict[str, Any]:
    """Parse a gateway's JSON object strictly: UTF-8, no NaN/Infinity, bounded depth,
    integers and floats in range, no NUL and no lone surrogates in any string."""
    try:
        text = body.decode("utf-8")
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except UnicodeDecodeError:
        raise MalformedWebhook("body is not UTF-8") from None
    except RecursionError:
        raise MalformedWebhook(f"body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise MalformedWebhook(f"body is not JSON: {str(exc)[:100]}") from None
    if not isinstance(value, dict):
        raise MalformedWebhook("body is not a JSON object")
    _check_tree(value)
    return value


def _check_tree(root: Any) -> None:
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MalformedWebhook(f"body nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


def _check_text(value: str) -> None:
    if "\x00" in value:
        raise MalformedWebhook("a string holds a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedWebhook("a string holds a lone surrogate") from None


def identifier(value: object, what: str) -> str:
    """Return a gateway id: printable ASCII, 1 to 200 characters."""
    if not isinstance(value, str) or not value:
        raise MalformedWebhook(f"{what} is missing")
    if len(value) > ID_MAX or not (value.isascii() and value.isprintable()):
        raise MalformedWebhook(f"{what} is not 1-{ID_MAX} printable ASCII characters")
    return value


def status_word(value: object, what: str) -> str:
    """Return a gateway status: a non-empty string of at most 64 characters."""
    if not isinstance(value, str) or not value:
        raise MalformedWebhook(f"{what} is missing")
    if len(value) > STATUS_MAX:
        raise MalformedWebhook(f"{what} is longer than {STATUS_MAX} characters")
    return value


def epoch_seconds(value: object, what: str) -> datetime:
    """Read Unix seconds (an integer) as an aware UTC time between 2000 and 2100."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedWebhook(f"{what} is not an integer timestamp")
    if not EARLIEST.timestamp() <= value < LATEST.timestamp():
        raise MalformedWebhook(f"{what} {value} is outside 2000-2100")
    return datetime.fromtimestamp(value, UTC)


def epoch_header(value: str, what: str) -> int:
    """Read a Unix-seconds header: at most 12 ASCII digits (no overflow, no 5 000 digits)."""
    value = value.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 12):
        raise MalformedWebhook(f"{what} is not a Unix timestamp")
    return int(value)


def rfc3339(value: object, what: str) -> datetime:
    """Read an RFC 3339 timestamp with a UTC offset, between 2000 and 2100."""
    if not isinstance(value, str):
        raise MalformedWebhook(f"{what} is missing")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedWebhook(f"{what} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise MalformedWebhook(f"{what} has no UTC offset")
    # Compare before converting: 0001-01-01T00:00:00+05:00 cannot be shifted to UTC.
    if not EARLIEST <= moment < LATEST:
        raise MalformedWebhook(f"{what} is outside 2000-2100")
    return moment.astimezone(UTC)


def known_fields(source: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """Keep only the named fields whose values are plain scalars in range.

    What an adapter stores and shows (the timeline) is what it knows: a field the gateway
    adds, or a card number an attacker slips into a body, is not echoed to merchants.
    """
    kept: dict[str, Any] = {}
    for name in names:
        value = source.get(name)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int) and abs(value) <= MAX_SAFE_INT:
            kept[name] = value
        elif isinstance(value, str) and value:
            kept[name] = value[:MAX_TEXT]
    return kept


def money(entity: Mapping[str, Any], amount_field: str) -> tuple[int | None, str | None]:
    """Read an amount in minor units and its currency; (None, None) when either is unusable.

    An amount the gateway does not give, or gives in a shape no amount has, says nothing
    about the amount: the check against the registered one is skipped, never guessed.
    """
    amount, currency = entity.get(amount_field), entity.get("currency")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= 10**15:
        return None, None
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        return None, None
    return amount, currency.upper()


def tag(metadata: object, name: str) -> str | None:
    """Read one string tag from a gateway's metadata or notes object."""
    value = metadata.get(name) if isinstance(metadata, Mapping) else None
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None
