"""Operator endpoints under `/admin`, on only when RECONCILER_ADMIN_TOKEN is set."""

from __future__ import annotations

import hmac

from flask import Blueprint, request
from werkzeug.exceptions import NotFound, Unauthorized

from reconciler.entrypoints.admin_schemas import BulkRequest, BulkResult, Refusal
from reconciler.entrypoints.merchant_auth import ctx
from reconciler.entrypoints.reliability_schemas import Reliability, WindowQuery
from reconciler.entrypoints.routing import Routes
from reconciler.entrypoints.schemas import (
    AdminFilter,
    Payment,
    PaymentPage,
    ReportOutcome,
    Resolution,
    StatusReport,
    Timeline,
)
from reconciler.services import admin, operators, reliability_report, review_bulk

bp = Blueprint("admin", __name__, url_prefix="/admin")
routes = Routes(bp, security="admin", not_found="No such payment")


@bp.before_request
def authenticate_admin() -> None:
    """Refuse a request without the admin token (404 while admin endpoints are off)."""
    token = ctx().settings.admin_token
    if not token:
        raise NotFound("admin endpoints are off (set RECONCILER_ADMIN_TOKEN)")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise Unauthorized("send the admin token as `Authorization: Bearer <token>`")


@routes.get("/payments", query=AdminFilter, ok={200: PaymentPage})
def list_payments(query: AdminFilter) -> PaymentPage:
    """List every merchant's payments, newest first, optionally in one sync state."""
    page, cursor = admin.list_by_sync_state(
        ctx(), query.sync_state or None, query.limit, query.cursor or None
    )
    return PaymentPage(data=[Payment.model_validate(p) for p in page], next_cursor=cursor)


@routes.get("/payments/<payment_id>", ok={200: Payment})
def show(payment_id: str) -> Payment:
    """Show any merchant's payment."""
    return Payment.model_validate(admin.show(ctx(), payment_id))


@routes.post("/payments/<payment_id>/refresh", ok={202: Payment})
def refresh(payment_id: str) -> tuple[Payment, int]:
    """Poll the payment as soon as possible (reviving it if polling gave up)."""
    return Payment.model_validate(admin.refresh(ctx(), payment_id)), 202


@routes.get("/payments/<payment_id>/events", ok={200: Timeline})
def payment_events(payment_id: str) -> Timeline:
    """List any merchant's payment's timeline, oldest first: every report, applied or not."""
    _, events = operators.timeline(ctx(), payment_id)
    return Timeline.model_validate({"data": events})


@routes.post("/payments/<payment_id>/report", body=StatusReport, ok={200: ReportOutcome})
def report(payment_id: str, body: StatusReport) -> ReportOutcome:
    """Apply an operator's status report through the usual rules (terminal: resolves)."""
    done = admin.report_status(
        ctx(), payment_id, body.status, body.gateway_status, body.note, resolve=body.resolve
    )
    return _outcome(done)


@routes.post("/payments/<payment_id>/resolve", body=Resolution, ok={200: ReportOutcome})
def resolve(payment_id: str, body: Resolution) -> ReportOutcome:
    """Clear the payment's review flag."""
    return _outcome(admin.resolve_review(ctx(), payment_id, body.note))


@routes.post("/payments/bulk", body=BulkRequest, ok={200: BulkResult})
def bulk(body: BulkRequest) -> BulkResult:
    """Refresh, resolve or settle many payments at once, each on its own."""
    done = review_bulk.act_on_many(ctx(), body.action, body.payment_ids, body.note)
    refused = [Refusal(id=pid, detail=why) for pid, why in done.refused.items()]
    return BulkResult(done=done.done, refused=refused)


def _outcome(done: admin.ReviewAction) -> ReportOutcome:
    return ReportOutcome(
        outcome=done.outcome, resolved=done.resolved, payment=Payment.model_validate(done.payment)
    )


@routes.get(
    "/gateway_accounts/<account_id>/reliability",
    query=WindowQuery,
    ok={200: Reliability},
    problems={404: "No such gateway account"},
)
def reliability(account_id: str, query: WindowQuery) -> Reliability:
    """Show a gateway account's webhook reliability over the last 24 h or 7 days."""
    report = reliability_report.account_report(ctx(), account_id, query.window)
    return Reliability.model_validate(report)
