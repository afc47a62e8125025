"""The operator's page's forms: the admin API's operations, behind the session and CSRF.

Each answers with a redirect back to the page the form was on, carrying a fixed message
code (`admin_ui_format.MESSAGES`), or with a page saying what was refused.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import redirect, request, url_for
from pydantic import ValidationError
from werkzeug.wrappers import Response

from reconciler.entrypoints.admin_ui_base import bp, checked_id, page, safe_next
from reconciler.entrypoints.endpoint_schemas import RecoverRequest
from reconciler.entrypoints.merchant_auth import ctx
from reconciler.services import admin, notify_admin, review_bulk
from reconciler.services.errors import ValidationFailed

MESSAGE_PARAMETERS = ("msg", "id", "n", "outcome")


def _note() -> str:
    note = request.form.get("note", "").strip()
    if not note or len(note) > 1000:
        raise ValidationFailed("a note (1 to 1000 characters) is required: say why")
    return note


def _back(default: str, msg: str, **values: str | int) -> Response:
    """Go back to the page the form was on (or `default`), with a message code."""
    target = request.form.get("next")
    if not target or safe_next(target) != target:
        target = default
    parts = urlsplit(target)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in MESSAGE_PARAMETERS]
    query += [("msg", msg), *((k, str(v)) for k, v in values.items())]
    return redirect(urlunsplit(parts._replace(query=urlencode(query))), 303)


@bp.post("/payments/<payment_id>/refresh")
def refresh(payment_id: str) -> Response:
    """Poll the payment as soon as possible (reviving it if polling gave up)."""
    admin.refresh(ctx(), checked_id("payment", payment_id))
    return _back(url_for(".payment", payment_id=payment_id), "refreshed", id=payment_id)


@bp.post("/payments/<payment_id>/report")
def report(payment_id: str) -> Response:
    """Apply an operator's status report through the usual rules (terminal: resolves)."""
    status = request.form.get("status", "")
    gateway_status = request.form.get("gateway_status", "").strip() or None
    if gateway_status is not None and len(gateway_status) > 64:
        raise ValidationFailed("gateway status must be at most 64 characters")
    done = admin.report_status(
        ctx(),
        checked_id("payment", payment_id),
        status,
        gateway_status,
        _note(),
        resolve=request.form.get("keep_review") != "1",
    )
    return _back(
        url_for(".payment", payment_id=payment_id),
        "reported_resolved" if done.resolved else "reported",
        id=payment_id,
        outcome=done.outcome.value,
    )


@bp.post("/payments/<payment_id>/resolve")
def resolve(payment_id: str) -> Response:
    """Clear the payment's review flag."""
    admin.resolve_review(ctx(), checked_id("payment", payment_id), _note())
    return _back(url_for(".payment", payment_id=payment_id), "resolved", id=payment_id)


@bp.post("/review/bulk")
def bulk() -> str:
    """Refresh, resolve or settle the selected payments of the review queue, each on its own."""
    ids = [checked_id("payment", pid) for pid in request.form.getlist("payment_id")]
    action = request.form.get("action", "")
    outcome = review_bulk.act_on_many(ctx(), action, ids, _note())
    back = request.form.get("next")
    return page(
        "bulk_done.html",
        action=action,
        outcome=outcome,
        back=back if back and safe_next(back) == back else url_for(".review"),
    )


@bp.post("/endpoints/<endpoint_id>/deliveries/<delivery_id>/retry")
def retry(endpoint_id: str, delivery_id: str) -> Response:
    """Attempt a delivery again now (reviving a failed one), as its merchant's retry does."""
    delivery, _, _ = notify_admin.retry_delivery(
        ctx(), checked_id("endpoint", endpoint_id), checked_id("delivery", delivery_id)
    )
    return _back(url_for(".endpoints", endpoint_id=endpoint_id), "retried", id=delivery.id)


@bp.post("/endpoints/<endpoint_id>/recover")
def recover(endpoint_id: str) -> Response:
    """Attempt again every failed delivery of the endpoint created since the given time."""
    try:
        since = RecoverRequest.model_validate({"since": request.form.get("since", "")}).since
    except ValidationError as exc:
        raise ValidationFailed(f"since: {exc.errors()[0]['msg']}") from None
    count = notify_admin.recover_deliveries(ctx(), checked_id("endpoint", endpoint_id), since=since)
    msg = "recovered_one" if count == 1 else "recovered"
    return _back(url_for(".endpoints", endpoint_id=endpoint_id), msg, id=endpoint_id, n=count)
