"""The merchant API: `/v1/payments` and its sub-resources."""

from __future__ import annotations

from flask import Blueprint, url_for

from reconciler.entrypoints.merchant_auth import authenticate, ctx, merchant
from reconciler.entrypoints.routing import Answer, Routes
from reconciler.entrypoints.schemas import (
    Payment,
    PaymentFilter,
    PaymentPage,
    PaymentRequest,
    RefreshedPayment,
    Timeline,
)
from reconciler.services import payments

bp = Blueprint("payments", __name__, url_prefix="/v1")
routes = Routes(bp, security="bearer", not_found="No such payment for this merchant")
bp.before_request(authenticate)


@routes.post(
    "/payments",
    body=PaymentRequest,
    ok={
        201: Answer(Payment, "Registered", headers=("Location",)),
        200: Answer(Payment, "The same request again: the same payment"),
    },
    problems={
        404: "No such gateway account for this merchant",
        409: (
            "The reference was used with a different body, the merchant tracks this gateway "
            "payment under another reference, or the account is disabled"
        ),
    },
)
def create_payment(body: PaymentRequest) -> tuple[Payment, int, dict[str, str]]:
    """Register a payment (or create it at the gateway); idempotent on merchant_reference."""
    request_ = payments.PaymentRequest(**body.model_dump())
    payment, created = payments.register_payment(ctx(), merchant(), request_)
    location = url_for("payments.get_payment", payment_id=payment.id)
    return Payment.model_validate(payment), 201 if created else 200, {"Location": location}


@routes.get("/payments/<payment_id>", ok={200: Payment})
def get_payment(payment_id: str) -> Payment:
    """Show one payment."""
    return Payment.model_validate(payments.get_payment(ctx(), merchant(), payment_id))


@routes.get("/payments", query=PaymentFilter, ok={200: PaymentPage})
def list_payments(query: PaymentFilter) -> PaymentPage:
    """List the merchant's payments, newest first, one page at a time."""
    page, cursor = payments.list_payments(
        ctx(),
        merchant(),
        status=query.status or None,
        gateway=query.gateway or None,
        limit=query.limit,
        cursor=query.cursor or None,
    )
    return PaymentPage(data=[Payment.model_validate(p) for p in page], next_cursor=cursor)


@routes.get("/payments/<payment_id>/events", ok={200: Timeline})
def payment_events(payment_id: str) -> Timeline:
    """Show the payment's timeline: every report, applied or not, oldest first."""
    events = payments.payment_timeline(ctx(), merchant(), payment_id)
    return Timeline.model_validate({"data": events})


@routes.post("/payments/<payment_id>/refresh", ok={202: RefreshedPayment})
def refresh_payment(payment_id: str) -> tuple[RefreshedPayment, int]:
    """Poll the payment as soon as possible (reviving it if polling gave up).

    A settled payment costs no gateway call, and refreshes poll a payment at most once
    per `domain.sync.REFRESH_MIN_INTERVAL_S`; `refresh.outcome` says which happened.
    """
    done = payments.refresh_payment(ctx(), merchant(), payment_id)
    shown = dict(Payment.model_validate(done.payment))
    note = {"outcome": done.outcome.value, "poll_at": done.payment.next_poll_at}
    return RefreshedPayment.model_validate({**shown, "refresh": note}), 202
