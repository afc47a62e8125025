"""Act on many payments of the review queue at once: each on its own, each refusal named.

Each payment is its own transaction, as if acted on alone: one that cannot be acted on
(resolved by someone else meanwhile, a conflict the rules keep) is listed with the reason
and does not undo the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum

from reconciler.domain.status import Status
from reconciler.services import admin
from reconciler.services.context import Context
from reconciler.services.errors import ServiceError, ValidationFailed

log = logging.getLogger(__name__)

MAX_BULK = 100  # payments per bulk action (one page of the review queue and then some)


class BulkAction(StrEnum):
    """What to do to each selected payment."""

    REFRESH = "refresh"  # poll it as soon as possible (revives gave_up)
    RESOLVE = "resolve"  # clear the review flag
    CANCEL = "cancel"  # settle as canceled: report `canceled` (which resolves the review)
    FAIL = "fail"  # settle as failed: report `failed` (which resolves the review)


SETTLES = {BulkAction.CANCEL: Status.CANCELED, BulkAction.FAIL: Status.FAILED}


@dataclass
class BulkOutcome:
    """Which payments were acted on, and why each of the others was not."""

    done: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


def act_on_many(ctx: Context, action: str, payment_ids: list[str], note: str) -> BulkOutcome:
    """Apply one operator action to each payment, in order, each in its own transaction.

    The note is required for every action: the timeline keeps it (a refresh records none
    there, so the log line of the bulk action does).
    """
    try:
        chosen = BulkAction(action)
    except ValueError:
        raise ValidationFailed(
            f"action must be one of: {', '.join(a.value for a in BulkAction)}"
        ) from None
    unique = list(dict.fromkeys(payment_ids))
    if not 1 <= len(unique) <= MAX_BULK:
        raise ValidationFailed(f"select 1 to {MAX_BULK} payments")
    if not note.strip():
        raise ValidationFailed("a note is required: say why")
    outcome = BulkOutcome()
    for payment_id in unique:
        try:
            _act(ctx, chosen, payment_id, note)
        except ServiceError as exc:
            outcome.refused[payment_id] = exc.detail
        else:
            outcome.done.append(payment_id)
    log.info(
        "operator bulk action",
        extra={
            "action": chosen.value,
            "note": note,
            "done": len(outcome.done),
            "refused": len(outcome.refused),
        },
    )
    return outcome


def _act(ctx: Context, action: BulkAction, payment_id: str, note: str) -> None:
    if action is BulkAction.REFRESH:
        admin.refresh(ctx, payment_id)
    elif action is BulkAction.RESOLVE:
        admin.resolve_review(ctx, payment_id, note)
    else:
        status = SETTLES[action]
        done = admin.report_status(ctx, payment_id, status.value, None, note)
        if done.payment.status != status:
            raise ValidationFailed(
                f"not settled: the status rules kept {done.payment.status} "
                f"({done.outcome.value}); the report is in its timeline"
            )
