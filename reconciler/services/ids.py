"""Ids the service mints: a prefix that names the kind, then 96 random bits in hex."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """Mint an id such as `evt_3f…`: the prefix, an underscore, 24 hex digits."""
    return f"{prefix}_{secrets.token_hex(12)}"
