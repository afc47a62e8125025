"""Request and response shapes of `/v1/webhook_endpoints`, in the house types of `schemas`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from reconciler.domain.delivery import DeliveryStatus
from reconciler.domain.notify import EventType
from reconciler.entrypoints.schemas import (
    TEXT_PATTERN,
    Instant,
    Row,
    Shape,
    Timestamp,
    one_of,
)
from reconciler.services.payments import MAX_LIST_LIMIT

Url = Annotated[
    str,
    Strict(),
    StringConstraints(min_length=1, max_length=2048, pattern=TEXT_PATTERN),
    Field(examples=["https://example.com/hooks"]),
]
Description = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=500, pattern=TEXT_PATTERN)
]
EventTypes = Annotated[list[EventType], Field(min_length=1)]
EndpointStatus = Literal["enabled", "disabled"]
CHANGEABLE = ("url", "events", "description", "status")


def _not_nullable(schema: dict[str, Any]) -> None:
    # Left out means "unchanged" and null is refused (`_not_null`): document the field as
    # optional, never null. (`SkipJsonSchema[None]` would do it, but makes the field a
    # union whose errors name each branch.)
    branches = [branch for branch in schema.pop("anyOf") if branch != {"type": "null"}]
    schema.update(branches[0])
    schema.pop("default", None)


# Requests


class EndpointCreate(Shape):
    """The body of `POST /v1/webhook_endpoints`."""

    url: Url = Field(description="https, and a host that resolves to public addresses")
    events: EventTypes | None = Field(None, description="Which events; omit for all")
    description: Description | None = None


class EndpointUpdate(Shape):
    """The body of `PATCH /v1/webhook_endpoints/{id}`: only the fields sent change."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    url: Url | None = Field(None, json_schema_extra=_not_nullable)
    events: EventTypes | None = Field(None, json_schema_extra=_not_nullable)
    description: Description | None = Field(None, description="null removes it")
    status: EndpointStatus | None = Field(None, json_schema_extra=_not_nullable)

    @field_validator("url", "events", "status")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Reached only for a field sent: a default is not validated.
        if value is None:
            raise PydanticCustomError("not_null", "cannot be null")
        return value

    @model_validator(mode="after")
    def _changes_something(self) -> EndpointUpdate:
        if not self.model_fields_set:
            raise PydanticCustomError(
                "nothing_to_change", f"send at least one of: {', '.join(CHANGEABLE)}"
            )
        return self


class DeliveryFilter(Shape):
    """The query of `GET /v1/webhook_endpoints/{id}/deliveries`."""

    status: Annotated[str, one_of(["", *DeliveryStatus])] = Field(
        "", description="Only deliveries with this status; empty means any"
    )
    limit: int = Field(20, ge=1, le=MAX_LIST_LIMIT)
    cursor: str = Field("", description="`next_cursor` of the previous page")


class RecoverRequest(Shape):
    """The body of `POST /v1/webhook_endpoints/{id}/recover`."""

    since: Instant = Field(description="Attempt again every failed delivery created since then")


# Responses


class Endpoint(Row):
    """A webhook endpoint as the merchant sees it (never its secret)."""

    id: str = Field(examples=["we_3f2a9c0d1e2b4a5c6d7e8f90"])
    url: str
    events: list[EventType]
    description: str | None
    status: EndpointStatus
    disabled_reason: str | None
    last_error: str | None = Field(
        None, description="Why the last attempt failed (`timeout`, …); null once one succeeds"
    )
    last_error_at: Timestamp | None = None
    created_at: Timestamp


class EndpointWithSecret(Endpoint):
    """An endpoint just created or rotated, with the secret that signs its deliveries."""

    secret: str = Field(pattern=r"^whsec_", examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])


class EndpointList(Shape):
    """Every endpoint of the merchant, oldest first."""

    data: list[Endpoint]


class Delivery(Row):
    """One event's delivery to one endpoint."""

    id: str
    event_id: str
    event_type: EventType
    payment_id: str
    status: DeliveryStatus
    created_at: Timestamp
    attempts: int = Field(ge=0)
    next_attempt_at: Timestamp | None
    last_attempt_at: Timestamp | None
    last_response_status: int | None
    last_error: str | None
    delivered_at: Timestamp | None

    @model_validator(mode="before")
    @classmethod
    def _read_a_listing(cls, data: Any) -> Any:
        # The repository lists a delivery row with its event's type and payment id beside it.
        if isinstance(data, Sequence) and not isinstance(data, str | Mapping):
            row, event_type, payment_id = data
            beside = {"event_type": event_type, "payment_id": payment_id}
            listed = {name: getattr(row, name) for name in cls.model_fields if name not in beside}
            return listed | beside
        return data


class DeliveryPage(Shape):
    """One page of an endpoint's deliveries, newest first."""

    data: list[Delivery]
    next_cursor: str | None


class Recovered(Shape):
    """How many failed deliveries are due again."""

    count: int = Field(ge=0)
