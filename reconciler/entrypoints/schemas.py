"""The HTTP API's request and response shapes, written once.

Longer than most modules: every shape of the payments and admin APIs is declared here.

The same models validate requests, serialise answers (`routing`) and make the OpenAPI
document (`openapi`). Validation runs on JSON already decoded by `jsonbody` (which bounds
depth and numbers), in pydantic's lax mode with three deliberate exceptions: strings are
strict (no number is quietly turned into text), amounts are strict integers that also take
a whole-number float (`49900.0`: JSON has one number type, and JSON Schema's `integer`
includes it), and text patterns run on pydantic's default Rust engine, whose `$` is the end
of the text (as in ECMA-262, which OpenAPI readers apply) and which refuses lone surrogates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from annotated_types import Ge, Le
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainSerializer,
    Strict,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from reconciler.config import GATEWAYS
from reconciler.domain.currencies import ISO_4217
from reconciler.domain.status import Outcome, Source, Status, SyncState
from reconciler.domain.times import rfc3339
from reconciler.services.payments import MAX_LIST_LIMIT

MAX_AMOUNT = 10**15  # exact in a double, so `49900.0`-style amounts stay exact too

# Text a client sends: not blank, no control, invisible-format or line-separator characters.
# Written so the Rust engine (validation) and ECMA-262 (the OpenAPI document) read it alike.
_HIDDEN = r"\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff"
# An operator's note may span lines: tab, LF and CR are allowed there.
_HIDDEN_IN_NOTES = _HIDDEN.replace(r"\u0000-\u001f", r"\u0000-\u0008\u000b\u000c\u000e-\u001f")
TEXT_PATTERN = rf"^[^{_HIDDEN}]*[^\s{_HIDDEN}][^{_HIDDEN}]*$"
NOTE_PATTERN = rf"^[^{_HIDDEN_IN_NOTES}]*[^\s{_HIDDEN_IN_NOTES}][^{_HIDDEN_IN_NOTES}]*$"
# Every id the service hands out (`pay_…`, `we_…`) fits this; nothing else can exist.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


Text = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=200, pattern=TEXT_PATTERN)
]
ShortText = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=64, pattern=TEXT_PATTERN)
]
Note = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=1000, pattern=NOTE_PATTERN)
]
ResourceId = Annotated[str, Strict(), StringConstraints(pattern=ID_PATTERN)]


@dataclass(frozen=True)
class OneOf:
    """Annotate a `str` as one of a fixed set of values (a JSON Schema `enum`)."""

    values: tuple[str, ...]
    message: str | None = None

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        schema = core_schema.literal_schema(list(self.values))
        if self.message is None:
            return schema
        return core_schema.custom_error_schema(
            schema, custom_error_type="not_one_of", custom_error_message=self.message
        )


def one_of(values: Iterable[str], message: str | None = None) -> OneOf:
    return OneOf(tuple(values), message)


def _whole_number(value: Any) -> Any:
    # JSON has one number type: `49900.0` is the integer 49900 (as JSON Schema's `integer`
    # says). Anything else (1.5, true, "5") is left for the strict check to refuse.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Amount = Annotated[int, Strict(), Ge(1), Le(MAX_AMOUNT), BeforeValidator(_whole_number)]
Gateway = Annotated[str, one_of(GATEWAYS)]
Currency = Annotated[
    str, one_of(sorted(ISO_4217), "must be an ISO 4217 code in upper case, e.g. INR")
]
Timestamp = Annotated[
    AwareDatetime,
    PlainSerializer(rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]
# What a client may send as a time: an RFC 3339 date-time (as its section 5.6 allows, a space
# may stand for the T), and nothing else pydantic would take: a number or a string of digits
# as Unix time, an offset without its colon, a time without seconds. Past microseconds,
# digits are dropped.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339_text(value: Any) -> Any:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise PydanticCustomError(
            "rfc3339", "must be an RFC 3339 date-time with a zone, e.g. 2026-11-28T10:00:00Z"
        )
    return value


Instant = Annotated[Timestamp, BeforeValidator(_rfc3339_text)]


class Shape(BaseModel):
    """Base of every request and response shape: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Row(Shape):
    """Base of a response read off a stored row."""

    model_config = ConfigDict(from_attributes=True)


# Requests


class PaymentRequest(Shape):
    """The body of `POST /v1/payments`."""

    merchant_reference: Text
    gateway: Gateway
    amount: Amount = Field(description="In the currency's minor unit")
    currency: Currency
    gateway_payment_id: Text | None = Field(
        None, description="Track this existing gateway payment; omit to create one"
    )
    gateway_account: ResourceId | None = Field(
        None,
        description="The merchant's gateway account (`gwa_…`, or `default`); omit for the "
        "merchant's only active account at that gateway, else `default`",
    )


class PaymentFilter(Shape):
    """The query of `GET /v1/payments`."""

    status: Annotated[str, one_of(["", *Status])] = Field(
        "", description="Only payments with this status; empty means any"
    )
    gateway: Annotated[str, one_of(["", *GATEWAYS])] = Field(
        "", description="Only payments at this gateway; empty means any"
    )
    limit: int = Field(20, ge=1, le=MAX_LIST_LIMIT)
    cursor: str = Field("", description="`next_cursor` of the previous page")


class AdminFilter(Shape):
    """The query of `GET /admin/payments`."""

    sync_state: Annotated[str, one_of(["", *SyncState])] = Field(
        "", description="Only payments in this sync state; empty means any"
    )
    limit: int = Field(50, ge=1, le=MAX_LIST_LIMIT)
    cursor: str = Field("", description="`next_cursor` of the previous page")


class StatusReport(Shape):
    """An operator's report of a payment's status (read off the gateway's dashboard, say)."""

    status: Status
    gateway_status: ShortText | None = None
    note: Note = Field(description="Why: kept in the payment's timeline")
    resolve: bool = Field(
        True, description="A terminal status the rules take also clears the review flag"
    )


class Resolution(Shape):
    """An operator's reason for clearing a review flag."""

    note: Note = Field(description="Why: kept in the payment's timeline")


# Responses


class Sync(Row):
    """Why the service will or won't poll the payment."""

    state: SyncState = Field(validation_alias="sync_state")
    poll_attempts: int = Field(ge=0)
    next_poll_at: Timestamp | None
    last_polled_at: Timestamp | None
    last_error: str | None
    give_up_at: Timestamp


class Payment(Row):
    """A payment as the merchant sees it."""

    id: str
    merchant_reference: str
    gateway: str
    gateway_account: str = Field(description="`gwa_…`, or `default` (the service's own)")
    gateway_payment_id: str | None
    amount: int
    currency: str
    status: Status
    gateway_status: str | None
    status_source: Source | None
    created_at: Timestamp
    updated_at: Timestamp
    settled_at: Timestamp | None
    review_reason: str | None
    cancel_reason: str | None = Field(description='"abandoned" when nobody paid in time')
    sync: Sync

    @model_validator(mode="before")
    @classmethod
    def _nest_the_sync_columns(cls, data: Any) -> Any:
        # A stored row keeps the sync fields flat beside the others; the resource nests them.
        if not isinstance(data, Mapping):
            return {name: getattr(data, name) for name in cls.model_fields if name != "sync"} | {
                "sync": data
            }
        return data


class RefreshNote(Shape):
    """What a refresh did: a poll due now, throttled, not needed, or polling revived."""

    outcome: Annotated[str, one_of(("scheduled", "throttled", "settled", "revived"))]
    poll_at: Timestamp | None = Field(description="when the next poll is due (none: no poll)")


class RefreshedPayment(Payment):
    """The payment after a refresh, with what the refresh did."""

    refresh: RefreshNote


class Event(Row):
    """One report in a payment's timeline, applied or not."""

    id: int
    recorded_at: Timestamp
    source: Source
    outcome: Outcome
    from_status: str
    to_status: str
    gateway_status: str | None
    gateway_event_id: str | None
    occurred_at: Timestamp | None
    detail: dict[str, Any] | None


class PaymentPage(Shape):
    """One page of payments, newest first."""

    data: list[Payment]
    next_cursor: str | None


class Timeline(Shape):
    """Every report about a payment, oldest first."""

    data: list[Event]


class ReportOutcome(Shape):
    """What an operator's report or resolution did, and the payment after it."""

    outcome: Outcome
    resolved: bool = Field(description="The review flag was cleared by this action")
    payment: Payment


class FieldError(Shape):
    """One invalid field of a request: `field` is null when the body as a whole is wrong."""

    field: str | None
    detail: str

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}" if self.field else self.detail


class Problem(BaseModel):
    """An RFC 9457 problem; `errors` lists every invalid field of a 400."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str = Field(description="The path of the request")
    errors: list[FieldError] | None = None


def payment_resource(row: Any) -> dict[str, Any]:
    """Render a payment row as `GET /v1/payments/{id}` shows it (for notification events)."""
    data: dict[str, Any] = Payment.model_validate(row).model_dump(mode="json")
    return data
