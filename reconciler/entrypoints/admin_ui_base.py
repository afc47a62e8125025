"""The operator's page's blueprint and what every page shares: the session, the guard, the
CSRF check, the sign-in limiter, the banner and the template helpers.

The views are in `admin_ui` (pages) and `admin_ui_actions` (forms that change something).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer
from pydantic import TypeAdapter, ValidationError
from werkzeug.exceptions import BadRequest, Forbidden, NotFound
from werkzeug.wrappers import Response

from reconciler.domain.breaker import BreakerState, CircuitBreaker
from reconciler.domain.ratelimit import FailureLimiter
from reconciler.domain.times import rfc3339
from reconciler.entrypoints import admin_ui_format as fmt
from reconciler.entrypoints.merchant_auth import ctx
from reconciler.entrypoints.problems import SERVICE_ERRORS
from reconciler.entrypoints.schemas import ResourceId
from reconciler.services import admin_sessions, alerts, notify_stats
from reconciler.services.context import Clock
from reconciler.services.errors import ServiceError

log = logging.getLogger(__name__)

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
PUBLIC = {"admin_ui.sign_in", "admin_ui.static"}
# Failed sign-ins allowed per client address and window; then 429 until the window passes.
SIGN_IN_FAILURES = 5
SIGN_IN_WINDOW = timedelta(minutes=5)
_RESOURCE_ID: TypeAdapter[str] = TypeAdapter(ResourceId)

# The navigation: adding a page is a view plus one line here.
NAV = [
    ("admin_ui.overview", "Overview"),
    ("admin_ui.review", "Needs a human"),
    ("admin_ui.endpoints", "Endpoints"),
    ("admin_ui.find", "Find a payment"),
]


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


def sign_in_limiter() -> FailureLimiter:
    """Return this app's limiter of failed sign-ins (one per process)."""
    limiter: FailureLimiter | None = current_app.extensions.get("reconciler.sign_in_limiter")
    if limiter is None:
        limiter = FailureLimiter(limit=SIGN_IN_FAILURES, window=SIGN_IN_WINDOW)
        current_app.extensions["reconciler.sign_in_limiter"] = limiter
    return limiter


def client_address() -> str:
    """Name the client for the limiter: the address of the socket (a header can be forged)."""
    return request.remote_addr or "unknown"


# --- Session: a signed, timed cookie keyed by the admin token, live in the database -------


class _ClockSigner(TimestampSigner):
    """Stamp and check sessions by the service's clock (tests move it)."""

    def __init__(self, *args: Any, clock: Clock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock

    def get_timestamp(self) -> int:
        return int(self.clock().timestamp())


def serializer(token: str) -> URLSafeTimedSerializer:
    # Derived from the token, so rotating the token signs every session out.
    key = hmac.new(token.encode(), b"reconciler admin ui session", hashlib.sha256).digest()
    return URLSafeTimedSerializer(
        key,
        salt="reconciler.admin_ui.session",
        signer=_ClockSigner,
        signer_kwargs={"clock": ctx().clock},
    )


def read_session(token: str) -> dict[str, str] | None:
    """Return the request's session if its cookie is good and the server still holds it open."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = serializer(token).loads(raw, max_age=SESSION_MAX_AGE_S)
    except BadSignature:  # also covers SignatureExpired
        return None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(key), str) for key in ("csrf", "sid")
    ):
        return None
    if not admin_sessions.is_live(ctx(), data["sid"]):
        return None  # signed out (revoked), or expired on the server
    return data


def checked_id(name: str, value: str) -> str:
    """Refuse an id no resource can have (NUL, a lone surrogate) before any query sees it."""
    try:
        return _RESOURCE_ID.validate_python(value)
    except ValidationError:
        raise NotFound(f"no {name} {value!r}") from None


def secure() -> bool:
    return request.is_secure or request.headers.get("X-Forwarded-Proto", "") == "https"


def safe_next(target: str | None) -> str:
    """Follow `next` only to a page of ours (no open redirect, no header injection)."""
    if (
        target
        and target.startswith("/admin/ui/")
        and "//" not in target
        and "\\" not in target
        and target.isprintable()  # CR, LF and other controls would end up in a header
    ):
        return target
    return url_for(".overview")


@bp.before_request
def _guard() -> Response | None:
    token = ctx().settings.admin_token
    if not token:
        raise NotFound("the operator's page is off (set RECONCILER_ADMIN_TOKEN)")
    if request.endpoint in PUBLIC:
        return None
    session = read_session(token)
    if session is None:
        if request.method in ("GET", "HEAD"):
            return redirect(url_for(".sign_in", next=request.full_path.rstrip("?")), 303)
        raise Forbidden("sign in at /admin/ui/sign-in first")
    g.ui_csrf = session["csrf"]
    g.ui_sid = session["sid"]
    if request.method == "POST":
        given = request.form.get("csrf_token", "")
        if not hmac.compare_digest(given.encode(), session["csrf"].encode()):
            raise BadRequest("the form's CSRF token is missing or wrong: reload the page")
    return None


@bp.errorhandler(ServiceError)
def _service_error(exc: ServiceError) -> tuple[str, int]:
    status, title = SERVICE_ERRORS.get(type(exc), (400, "Bad request"))
    return page("error.html", status=status, title=title, detail=exc.detail), status


def _banner() -> list[alerts.Alert]:
    if not g.get("ui_csrf"):
        return []  # signed out: nothing about the service is shown
    try:
        return alerts.alerts(ctx(), sweeper_breakers(), endpoint_breakers())
    except Exception:
        # The banner must not take the page down with it (an error page included).
        log.exception("the operator page's banner could not be read")
        return []


@bp.context_processor
def _helpers() -> dict[str, Any]:
    now = ctx().clock()
    return {
        "nav": NAV,
        "csrf_token": lambda: g.get("ui_csrf", ""),
        "ts": rfc3339,
        "when": fmt.when,
        "age": lambda then: fmt.age(now, then),
        "duration": fmt.duration,
        "percent": fmt.percent,
        "guide": fmt.guide,
        "notice": fmt.notice(request.args),
        "banner": _banner(),
    }


def page(template: str, **values: Any) -> str:
    return render_template(f"admin_ui/{template}", **values)
