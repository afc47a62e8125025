"""Request and response shapes of `/v1/webhook_endpoints`, written once as pydantic models."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)

from reconciler.domain.notify import EventType
from reconciler.entrypoints.schemas import TEXT_PATTERN

_TEXT = re.compile(TEXT_PATTERN)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Timestamp = Annotated[
    datetime,
    PlainSerializer(_rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
EndpointStatus = Literal["enabled", "disabled"]
DeliveryStatusName = Literal["pending", "delivered", "failed"]
Url = Annotated[str, Field(min_length=1, max_length=2048, examples=["https://example.com/hooks"])]
Description = Annotated[str, Field(max_length=500)]


def _printable(value: str | None) -> str | None:
    # JSON lets a lone surrogate through (`"\\ud800"`); no database can store one.
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be printable text") from None
    if not _TEXT.fullmatch(value):
        raise ValueError("must be printable text, not blank")
    return value


class _Request(BaseModel):
    # Strict and parsed from JSON: `"amount": "5"` stays a string, unknown fields are refused.
    model_config = ConfigDict(extra="forbid", strict=True)


class EndpointCreate(_Request):
    """`POST /v1/webhook_endpoints`: where to deliver and which events (all when omitted)."""

    url: Url
    events: Annotated[list[EventType], Field(min_length=1)] | None = None
    description: Description | None = None

    _text = field_validator("description")(_printable)


class EndpointUpdate(_Request):
    """`PATCH /v1/webhook_endpoints/{id}`: the fields to change (`description: null` clears it)."""

    url: Url | None = None
    events: Annotated[list[EventType], Field(min_length=1)] | None = None
    description: Description | None = None
    status: EndpointStatus | None = None

    _text = field_validator("description")(_printable)


class RecoverRequest(_Request):
    """`POST /v1/webhook_endpoints/{id}/recover`: attempt again every failed delivery since then."""

    since: AwareDatetime


class Endpoint(BaseModel):
    """A webhook endpoint as the merchant sees it (never its secret)."""

    id: str = Field(examples=["we_3f2a9c0d1e2b4a5c6d7e8f90"])
    url: str
    events: list[EventType]
    description: str | None
    status: EndpointStatus
    disabled_reason: str | None
    created_at: Timestamp


class EndpointWithSecret(Endpoint):
    """An endpoint just created or rotated, with the secret that signs its deliveries."""

    secret: str = Field(pattern=r"^whsec_", examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])


class EndpointList(BaseModel):
    data: list[Endpoint]


class Delivery(BaseModel):
    """One event's delivery to one endpoint."""

    id: str
    event_id: str
    event_type: EventType
    payment_id: str
    status: DeliveryStatusName
    created_at: Timestamp
    attempts: int
    next_attempt_at: Timestamp | None
    last_attempt_at: Timestamp | None
    last_response_status: int | None
    last_error: str | None
    delivered_at: Timestamp | None


class DeliveryList(BaseModel):
    data: list[Delivery]
    next_cursor: str | None


class RecoverResult(BaseModel):
    count: int


MODELS: tuple[type[BaseModel], ...] = (
    EndpointCreate,
    EndpointUpdate,
    RecoverRequest,
    Endpoint,
    EndpointWithSecret,
    EndpointList,
    Delivery,
    DeliveryList,
    RecoverResult,
)


def dump(model: BaseModel) -> dict[str, Any]:
    """Serialise a response model as the API sends it."""
    return model.model_dump(mode="json")
