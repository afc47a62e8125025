"""How the service writes an instant: RFC 3339 UTC with milliseconds and a `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(value: datetime | None) -> str | None:
    """Format an aware datetime as RFC 3339 UTC with a `Z` (None stays None)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
