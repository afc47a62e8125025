"""The operator's page under `/admin/ui`: server-rendered, signed in with the admin token.

This module holds sign-in, sign-out and the pages that only read; `admin_ui_base` the
blueprint and what every page shares; `admin_ui_actions` the forms that change something.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from itertools import groupby

from flask import g, make_response, redirect, request, url_for
from werkzeug.wrappers import Response

from reconciler.domain.delivery import DeliveryStatus
from reconciler.domain.status import Status
from reconciler.entrypoints import (
    admin_ui_actions,  # noqa: F401 - registers the forms' routes
    reliability_chart,
)
from reconciler.entrypoints.admin_ui_base import (
    COOKIE,
    SESSION_MAX_AGE_S,
    bp,
    checked_id,
    client_address,
    endpoint_breakers,
    page,
    safe_next,
    secure,
    serializer,
    sign_in_limiter,
    sweeper_breakers,
)
from reconciler.entrypoints.admin_ui_format import chart
from reconciler.entrypoints.merchant_auth import ctx
from reconciler.services import admin_sessions, notify_admin, operators, reliability_report
from reconciler.services.notify_admin import EndpointRow
from reconciler.services.review_bulk import BulkAction

__all__ = ["COOKIE", "SESSION_MAX_AGE_S", "bp"]

log = logging.getLogger(__name__)

PAGE_SIZE = 50
ENDPOINTS_SHOWN = 50  # endpoints per page of the endpoints page, by merchant
TOP_FAILING = 10  # the endpoints failing the longest, above the pages
REFRESH_S = 10  # the overview reloads itself this often


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Response | tuple[str, int]:
    """Show the sign-in form; on a good token, open a session and set its cookie."""
    token = ctx().settings.admin_token or ""
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        return page("sign_in.html", next=target, error=None), 200
    limiter, client, now = sign_in_limiter(), client_address(), ctx().clock()
    wait = limiter.retry_after(client, now)
    if wait is not None:
        log.warning("admin sign-in refused: too many failures", extra={"client": client})
        error = f"Too many failed sign-ins from your address: try again in {int(wait)} s."
        answer = make_response(page("sign_in.html", next=target, error=error), 429)
        answer.headers["Retry-After"] = str(int(wait))
        return answer
    given = request.form.get("token", "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        limiter.failed(client, now)
        # Who tried, never what: a near-miss token in the logs would be half a leak.
        log.warning("admin sign-in failed", extra={"client": client})
        return page("sign_in.html", next=target, error="That is not the admin token."), 403
    limiter.succeeded(client)
    session_id = admin_sessions.open_session(ctx(), timedelta(seconds=SESSION_MAX_AGE_S))
    cookie = serializer(token).dumps({"sid": session_id, "csrf": secrets.token_urlsafe(32)})
    log.info("admin signed in", extra={"client": client})
    response = redirect(target, 303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=SESSION_MAX_AGE_S,
        path=bp.url_prefix or "/",
        secure=secure(),
        httponly=True,
        samesite="Strict",
    )
    return response


@bp.post("/sign-out")
def sign_out() -> Response:
    """End the session on the server and drop its cookie."""
    admin_sessions.revoke(ctx(), g.ui_sid)
    response = redirect(url_for(".sign_in", msg="signed_out"), 303)
    response.delete_cookie(
        COOKIE, path=bp.url_prefix or "/", secure=secure(), httponly=True, samesite="Strict"
    )
    return response


@bp.get("/")
def overview() -> str:
    """Show the backlog, the hour's polls and webhooks, and each gateway's breaker."""
    view = operators.overview(ctx(), sweeper_breakers())
    panels = [reliability_chart.view(p) for p in reliability_report.panels(ctx())]
    return page(
        "overview.html",
        view=view,
        chart=chart(view.minutes),
        refresh_s=REFRESH_S,
        webhook_panels=panels,
    )


@bp.get("/review")
def review() -> str:
    """List payments that need a human, oldest first."""
    state = request.args.get("state") or None
    payments, cursor = operators.needs_a_human(
        ctx(), state, PAGE_SIZE, request.args.get("cursor") or None
    )
    return page(
        "review.html",
        payments=payments,
        state=state,
        next_cursor=cursor,
        statuses=[s.value for s in Status],
        bulk_actions=[a.value for a in BulkAction],
        here=request.full_path.rstrip("?"),
    )


@bp.get("/payments")
def find() -> Response | tuple[str, int]:
    """Find a payment by any of its three ids; go straight to it when only one matches."""
    term = request.args.get("q")
    if term is None:
        return page("find.html", term="", matches=None), 200
    matches = operators.find(ctx(), term)
    if len(matches) == 1:
        return redirect(url_for(".payment", payment_id=matches[0].id), 303)
    return page("find.html", term=term, matches=matches), 200 if matches else 404


@bp.get("/payments/<payment_id>")
def payment(payment_id: str) -> str:
    """Show one payment: its resource, its whole timeline and its deliveries."""
    found, events = operators.timeline(ctx(), checked_id("payment", payment_id))
    deliveries, cursor = notify_admin.deliveries(
        ctx(),
        status=None,
        endpoint_id=None,
        payment_id=found.id,
        limit=PAGE_SIZE,
        cursor=request.args.get("cursor") or None,
    )
    return page(
        "payment.html",
        payment=found,
        events=events,
        deliveries=deliveries,
        next_cursor=cursor,
        statuses=[s.value for s in Status],
        here=request.path,
    )


@dataclass(frozen=True)
class MerchantEndpoints:
    """One merchant's endpoints on the endpoints page."""

    merchant_id: str
    name: str
    endpoints: list[EndpointRow]


@bp.get("/endpoints")
def endpoints() -> str:
    """List each merchant's endpoints with their health, and the deliveries to redo."""
    status = request.args.get("status") or None
    endpoint_id = request.args.get("endpoint_id") or None
    shown = request.args.get("deliveries") or DeliveryStatus.FAILED.value
    if endpoint_id is not None:
        checked_id("endpoint", endpoint_id)
    breakers = endpoint_breakers()
    rows, endpoints_cursor = notify_admin.endpoint_page(
        ctx(), breakers, status, ENDPOINTS_SHOWN, request.args.get("endpoints_cursor") or None
    )
    worst = notify_admin.endpoint_rows(ctx(), breakers, "failing", TOP_FAILING)
    deliveries, cursor = notify_admin.deliveries(
        ctx(),
        status=shown,
        endpoint_id=endpoint_id,
        limit=PAGE_SIZE,
        cursor=request.args.get("cursor") or None,
    )
    by_merchant = sorted(rows, key=lambda r: (r.merchant, r.endpoint.merchant_id))
    return page(
        "endpoints.html",
        merchants=[
            MerchantEndpoints(merchant_id, name, list(group))
            for (name, merchant_id), group in groupby(
                by_merchant, key=lambda r: (r.merchant, r.endpoint.merchant_id)
            )
        ],
        worst=worst,
        endpoints_cursor=endpoints_cursor,
        page_size=ENDPOINTS_SHOWN,
        status=status,
        endpoint_id=endpoint_id,
        shown=shown,
        delivery_statuses=[s.value for s in DeliveryStatus],
        endpoint_states={r.endpoint.id: r.endpoint for r in [*worst, *rows]},
        deliveries=deliveries,
        next_cursor=cursor,
        here=request.full_path.rstrip("?"),
    )
