"""Shapes of `GET /admin/gateway_accounts/{id}/reliability`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from reconciler.domain.reliability import DelaySource
from reconciler.entrypoints.schemas import Shape, one_of
from reconciler.services.reliability_report import WINDOWS


class WindowQuery(Shape):
    """The query: which window to count over."""

    window: Annotated[str, one_of(list(WINDOWS))] = Field("24h", description="24h or 7d")


class Quantiles(Shape):
    """Delay quantiles in seconds; null without samples."""

    p50: float | None
    p95: float | None
    p99: float | None


class EventTypeReliability(Shape):
    """One event type's webhooks over the window."""

    received: int = Field(description="first deliveries (duplicates not included)")
    duplicates: int
    out_of_order: int = Field(description="older than what was applied, or pending after terminal")
    bad_signatures: int = Field(description="counted under the event type `unverified`")
    delay_s: Quantiles = Field(description="gateway's event time -> received")
    missed: int = Field(
        description="terminal statuses a poll found before any webhook, whose webhook never came"
    )
    missed_rate: float | None = Field(description="missed / terminal statuses; null without any")
    late: int = Field(description="webhooks that came after a poll had found their status")
    late_delay_s: Quantiles


class FirstDelayInForce(Shape):
    """The first poll's delay in force for the account, and why."""

    value: float
    source: DelaySource


class Reliability(Shape):
    """An account's webhook reliability over a window."""

    account: str
    window: str
    event_types: dict[str, EventTypeReliability]
    first_delay_s: FirstDelayInForce
