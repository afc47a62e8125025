"""The operator's page under `/admin/ui`: server-rendered, signed in with the admin token.

Longer than most modules: one blueprint with its session, CSRF and pages.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import (
    Blueprint,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer
from pydantic import TypeAdapter, ValidationError
from werkzeug.exceptions import BadRequest, Forbidden, NotFound
from werkzeug.wrappers import Response

from reconciler.domain.breaker import BreakerState, CircuitBreaker
from reconciler.domain.delivery import DeliveryStatus
from reconciler.domain.status import Status
from reconciler.domain.times import rfc3339
from reconciler.entrypoints import reliability_chart
from reconciler.entrypoints.endpoint_schemas import RecoverRequest
from reconciler.entrypoints.merchant_auth import ctx
from reconciler.entrypoints.problems import SERVICE_ERRORS
from reconciler.entrypoints.schemas import ResourceId
from reconciler.services import admin, notify_admin, notify_stats, operators, reliability_report
from reconciler.services.context import Clock
from reconciler.services.errors import ServiceError, ValidationFailed
from reconciler.services.notify_admin import EndpointRow
from reconciler.services.operators import Minute

bp = Blueprint(
    "admin_ui",
    __name__,
    url_prefix="/admin/ui",
    template_folder="templates",
    static_folder="static/admin_ui",
    static_url_path="/static",
)

COOKIE = "reconciler_admin_ui"
SESSION_MAX_AGE_S = 8 * 3600  # one working shift; then sign in again
PAGE_SIZE = 50
ENDPOINTS_SHOWN = 50  # endpoints per page of the endpoints page, by merchant
TOP_FAILING = 10  # the endpoints failing the longest, above the pages
REFRESH_S = 10  # the overview reloads itself this often
PUBLIC = {"admin_ui.sign_in", "admin_ui.static"}
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)

# The navigation: adding a page is a view plus one line here.
NAV = [
    ("admin_ui.overview", "Overview"),
    ("admin_ui.review", "Needs a human"),
    ("admin_ui.endpoints", "Endpoints"),
    ("admin_ui.find", "Find a payment"),
]
_RESOURCE_ID: TypeAdapter[str] = TypeAdapter(ResourceId)


def sweeper_breakers() -> Mapping[str, CircuitBreaker]:
    """Return this process's sweeper breakers by gateway (empty when it runs no sweep)."""
    metrics = current_app.extensions.get("reconciler.metrics")
    sweeper = getattr(metrics, "sweeper", None)
    return dict(sweeper.breakers) if sweeper is not None else {}


def endpoint_breakers() -> dict[str, BreakerState] | None:
    """Return this process's delivery breakers by endpoint id (None when it runs no sweep)."""
    metrics = current_app.extensions.get("reconciler.metrics")
    sweeper = getattr(metrics, "sweeper", None)
    return notify_stats.endpoint_breakers(sweeper) if sweeper is not None else None


# --- Session: a signed, timed cookie keyed by the admin token -----------------------------


class _ClockSigner(TimestampSigner):
    """Stamp and check sessions by the service's clock (tests move it)."""

    def __init__(self, *args: Any, clock: Clock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock

    def get_timestamp(self) -> int:
        return int(self.clock().timestamp())


def _serializer(token: str) -> URLSafeTimedSerializer:
    # Derived from the token, so rotating the token signs every session out.
    key = hmac.new(token.encode(), b"reconciler admin ui session", hashlib.sha256).digest()
    return URLSafeTimedSerializer(
        key,
        salt="reconciler.admin_ui.session",
        signer=_ClockSigner,
        signer_kwargs={"clock": ctx().clock},
    )


def _read_session(token: str) -> dict[str, str] | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = _serializer(token).loads(raw, max_age=SESSION_MAX_AGE_S)
    except BadSignature:  # also covers SignatureExpired
        return None
    if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
        return None
    return data


def _secure() -> bool:
    return request.is_secure or request.headers.get("X-Forwarded-Proto", "") == "https"


def _safe_next(target: str | None) -> str:
    """Follow `next` only to a page of ours (no open redirect)."""
    if target and target.startswith("/admin/ui/") and "//" not in target and "\\" not in target:
        return target
    return url_for(".overview")


@bp.before_request
def _guard() -> Response | None:
    token = ctx().settings.admin_token
    if not token:
        raise NotFound("the operator's page is off (set RECONCILER_ADMIN_TOKEN)")
    if request.endpoint in PUBLIC:
        return None
    session = _read_session(token)
    if session is None:
        if request.method in ("GET", "HEAD"):
            return redirect(url_for(".sign_in", next=request.full_path.rstrip("?")), 303)
        raise Forbidden("sign in at /admin/ui/sign-in first")
    g.ui_csrf = session["csrf"]
    if request.method == "POST":
        given = request.form.get("csrf_token", "")
        if not hmac.compare_digest(given.encode(), session["csrf"].encode()):
            raise BadRequest("the form's CSRF token is missing or wrong: reload the page")
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "admin_ui.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(ServiceError)
def _service_error(exc: ServiceError) -> tuple[str, int]:
    status, title = SERVICE_ERRORS.get(type(exc), (400, "Bad request"))
    return _page("error.html", status=status, title=title, detail=exc.detail), status


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {
        "nav": NAV,
        "csrf_token": lambda: g.get("ui_csrf", ""),
        "ts": rfc3339,
        "when": _when,
        "age": _age,
        "duration": _duration,
        "percent": _percent,
        "done": request.args.get("done"),
    }


def _page(template: str, **values: Any) -> str:
    return render_template(f"admin_ui/{template}", **values)


# --- Pages ---------------------------------------------------------------------------------


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Response | tuple[str, int]:
    """Show the sign-in form; on a good token, set the session cookie."""
    token = ctx().settings.admin_token or ""
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return _page("sign_in.html", next=target, error=None), 200
    given = request.form.get("token", "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        return _page("sign_in.html", next=target, error="That is not the admin token."), 403
    cookie = _serializer(token).dumps({"csrf": secrets.token_urlsafe(32)})
    response = redirect(target, 303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=SESSION_MAX_AGE_S,
        path=bp.url_prefix or "/",
        secure=_secure(),
        httponly=True,
        samesite="Strict",
    )
    return response


@bp.post("/sign-out")
def sign_out() -> Response:
    """Drop the session cookie."""
    response = redirect(url_for(".sign_in"), 303)
    response.delete_cookie(
        COOKIE, path=bp.url_prefix or "/", secure=_secure(), httponly=True, samesite="Strict"
    )
    return response


@bp.get("/")
def overview() -> str:
    """Show the backlog, the hour's polls and webhooks, and each gateway's breaker."""
    view = operators.overview(ctx(), sweeper_breakers())
    panels = [reliability_chart.view(p) for p in reliability_report.panels(ctx())]
    return _page(
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
    page, cursor = operators.needs_a_human(
        ctx(), state, PAGE_SIZE, request.args.get("cursor") or None
    )
    return _page(
        "review.html",
        payments=page,
        state=state,
        next_cursor=cursor,
        statuses=[s.value for s in Status],
        here=request.full_path.rstrip("?"),
    )


@bp.get("/payments")
def find() -> Response | tuple[str, int]:
    """Find a payment by any of its three ids; go straight to it when only one matches."""
    term = request.args.get("q")
    if term is None:
        return _page("find.html", term="", matches=None), 200
    matches = operators.find(ctx(), term)
    if len(matches) == 1:
        return redirect(url_for(".payment", payment_id=matches[0].id), 303)
    return _page("find.html", term=term, matches=matches), 200 if matches else 404


@bp.get("/payments/<payment_id>")
def payment(payment_id: str) -> str:
    """Show one payment: its resource, its whole timeline and its deliveries."""
    found, events = operators.timeline(ctx(), _checked_id("payment", payment_id))
    deliveries, cursor = notify_admin.deliveries(
        ctx(),
        status=None,
        endpoint_id=None,
        payment_id=found.id,
        limit=PAGE_SIZE,
        cursor=request.args.get("cursor") or None,
    )
    return _page(
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
        _checked_id("endpoint", endpoint_id)
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
    return _page(
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


# --- Actions: the admin API's operations, behind the session and the CSRF token ----------


def _note() -> str:
    note = request.form.get("note", "").strip()
    if not note or len(note) > 1000:
        raise ValidationFailed("a note (1 to 1000 characters) is required: say why")
    return note


def _back(default: str, done: str) -> Response:
    """Go back to the page the form was on (or `default`), saying what was done."""
    target = request.form.get("next")
    if not target or _safe_next(target) != target:
        target = default
    parts = urlsplit(target)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "done"] + [("done", done)]
    return redirect(urlunsplit(parts._replace(query=urlencode(query))), 303)


def _checked_id(name: str, value: str) -> str:
    """Refuse an id no resource can have (NUL, a lone surrogate) before any query sees it."""
    try:
        return _RESOURCE_ID.validate_python(value)
    except ValidationError:
        raise NotFound(f"no {name} {value!r}") from None


@bp.post("/payments/<payment_id>/refresh")
def refresh(payment_id: str) -> Response:
    """Poll the payment as soon as possible (reviving it if polling gave up)."""
    admin.refresh(ctx(), _checked_id("payment", payment_id))
    return _back(url_for(".payment", payment_id=payment_id), "refreshed")


@bp.post("/payments/<payment_id>/report")
def report(payment_id: str) -> Response:
    """Apply an operator's status report through the usual rules."""
    status = request.form.get("status", "")
    gateway_status = request.form.get("gateway_status", "").strip() or None
    if gateway_status is not None and len(gateway_status) > 64:
        raise ValidationFailed("gateway status must be at most 64 characters")
    _, decision = admin.report_status(
        ctx(), _checked_id("payment", payment_id), status, gateway_status, _note()
    )
    return _back(url_for(".payment", payment_id=payment_id), f"reported: {decision.outcome.value}")


@bp.post("/payments/<payment_id>/resolve")
def resolve(payment_id: str) -> Response:
    """Clear the payment's review flag."""
    admin.resolve_review(ctx(), _checked_id("payment", payment_id), _note())
    return _back(url_for(".payment", payment_id=payment_id), "resolved")


@bp.post("/endpoints/<endpoint_id>/deliveries/<delivery_id>/retry")
def retry(endpoint_id: str, delivery_id: str) -> Response:
    """Attempt a delivery again now (reviving a failed one), as its merchant's retry does."""
    delivery, _, _ = notify_admin.retry_delivery(
        ctx(), _checked_id("endpoint", endpoint_id), _checked_id("delivery", delivery_id)
    )
    return _back(
        url_for(".endpoints", endpoint_id=endpoint_id),
        f"delivery {delivery.id} is {delivery.status} and due now",
    )


@bp.post("/endpoints/<endpoint_id>/recover")
def recover(endpoint_id: str) -> Response:
    """Attempt again every failed delivery of the endpoint created since the given time."""
    try:
        since = RecoverRequest.model_validate({"since": request.form.get("since", "")}).since
    except ValidationError as exc:
        raise ValidationFailed(f"since: {exc.errors()[0]['msg']}") from None
    count = notify_admin.recover_deliveries(
        ctx(), _checked_id("endpoint", endpoint_id), since=since
    )
    return _back(
        url_for(".endpoints", endpoint_id=endpoint_id),
        f"{count} failed {'delivery' if count == 1 else 'deliveries'} of {endpoint_id} "
        f"{'is' if count == 1 else 'are'} pending again",
    )


# --- Presentation helpers --------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    height: float
    label: str


@dataclass(frozen=True)
class Chart:
    """An SVG bar chart's geometry: one slot per minute, polls and webhooks side by side."""

    width: int
    height: int
    polls: list[Bar]
    webhooks: list[Bar]
    slots: list[tuple[float, str]]  # x and tooltip of each minute
    peak: int
    total_polls: int
    total_webhooks: int
    first: datetime | None
    last: datetime | None


def chart(minutes: list[Minute], *, slot: int = 10, height: int = 120) -> Chart:
    """Lay out the per-minute counts as bars scaled to the busiest minute."""
    peak = max([m.polls for m in minutes] + [m.webhooks for m in minutes] + [1])
    usable = height - 4

    def bar(x: float, count: int, what: str, minute: Minute) -> Bar:
        h = round(usable * count / peak, 1)
        return Bar(x, height - h, h, f"{minute.start:%H:%M} UTC: {count} {what}")

    polls: list[Bar] = []
    webhooks: list[Bar] = []
    slots: list[tuple[float, str]] = []
    for i, minute in enumerate(minutes):
        x = float(i * slot)
        polls.append(bar(x + 1, minute.polls, "polls", minute))
        webhooks.append(bar(x + slot / 2, minute.webhooks, "webhooks", minute))
        slots.append(
            (x, f"{minute.start:%H:%M} UTC: {minute.polls} polls, {minute.webhooks} webhooks")
        )
    return Chart(
        width=slot * len(minutes),
        height=height,
        polls=polls,
        webhooks=webhooks,
        slots=slots,
        peak=peak,
        total_polls=sum(m.polls for m in minutes),
        total_webhooks=sum(m.webhooks for m in minutes),
        first=minutes[0].start if minutes else None,
        last=minutes[-1].start if minutes else None,
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    for unit, size, smaller in (("d", 86400, 3600), ("h", 3600, 60), ("min", 60, 1)):
        if seconds >= size:
            whole, rest = divmod(seconds, size)
            part = rest // smaller
            return f"{whole} {unit} {_duration(part * smaller)}" if part else f"{whole} {unit}"
    return f"{seconds} s"


def _percent(rate: float | None) -> str:
    """Format a share for people: `97.5 %`, `100 %`, or a dash when there is none."""
    if rate is None:
        return "–"
    shown = f"{rate * 100:.1f}".removesuffix(".0")
    if shown == "100" and rate < 1:
        shown = "99.9"  # never round a failure away
    return f"{shown} %"


def _when(at: datetime | None) -> str:
    """Format a time for people: `2026-11-28 10:00:03 UTC` (the markup keeps RFC 3339)."""
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if at is not None else ""


def _age(when: datetime | None) -> str:
    if when is None:
        return "–"
    return _duration((ctx().clock() - when.astimezone(UTC)).total_seconds())
