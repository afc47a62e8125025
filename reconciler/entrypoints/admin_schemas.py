"""The shapes of the operator's bulk action on the review queue."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from reconciler.entrypoints.schemas import Note, ResourceId, Shape, one_of
from reconciler.services.review_bulk import MAX_BULK, BulkAction


class BulkRequest(Shape):
    """The body of `POST /admin/payments/bulk`."""

    action: Annotated[str, one_of(list(BulkAction))] = Field(
        description="refresh, resolve, or settle as canceled (`cancel`) or failed (`fail`)"
    )
    payment_ids: list[ResourceId] = Field(min_length=1, max_length=MAX_BULK)
    note: Note = Field(description="Why: kept in each payment's timeline (refresh: in the log)")


class Refusal(Shape):
    """A payment the action was not applied to, and why."""

    id: str
    detail: str


class BulkResult(Shape):
    """Which payments were acted on, and which were not (each its own transaction)."""

    done: list[str]
    refused: list[Refusal]
