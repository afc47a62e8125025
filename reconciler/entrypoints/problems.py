"""RFC 9457 problem responses for every error the API gives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Flask, Response, has_request_context, request
from werkzeug.exceptions import HTTPException

from reconciler.entrypoints.schemas import FieldError, Problem
from reconciler.services.errors import (
    Conflict,
    GatewayUnavailable,
    NotFound,
    SecretsKeyMissing,
    ServiceError,
    SignatureRejected,
    ValidationFailed,
    WebhookUnreadable,
)

PROBLEM = "application/problem+json"
# A 64 KB body can hold thousands of bad fields; echoing them all would amplify it.
MAX_LISTED_ERRORS = 20


class InvalidRequest(Exception):
    """A request that fails validation; every invalid field is listed."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = list(errors)


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    errors: Sequence[FieldError] | None = None,
    **extra: Any,
) -> Response:
    """Build a problem+json response; `instance` is the request's path."""
    body = Problem(
        type=f"https://reconciler.dev/problems/{title.lower().replace(' ', '-')}",
        title=title,
        status=status,
        detail=detail,
        instance=request.path if has_request_context() else "",
        errors=list(errors) if errors is not None else None,
        **extra,
    )
    listed = None if errors is not None else {"errors"}  # only where it means something
    return Response(body.model_dump_json(exclude=listed), status=status, mimetype=PROBLEM)


def invalid(errors: Sequence[FieldError]) -> Response:
    """Answer a 400 that lists every invalid field (up to MAX_LISTED_ERRORS)."""
    shown = list(errors[:MAX_LISTED_ERRORS])
    detail = "; ".join(str(e) for e in shown)
    if len(errors) > len(shown):
        detail += f"; and {len(errors) - len(shown)} more"
    return problem(400, "Invalid request", detail, errors=shown)


# The one place a use case's refusal becomes an HTTP answer.
SERVICE_ERRORS: dict[type[ServiceError], tuple[int, str]] = {
    ValidationFailed: (400, "Invalid request"),
    GatewayUnavailable: (400, "Gateway not configured"),
    NotFound: (404, "Not found"),
    Conflict: (409, "Conflict"),
    SignatureRejected: (401, "Invalid signature"),
    WebhookUnreadable: (400, "Malformed webhook"),
    # The service's own configuration is missing: its fault, not the caller's.
    SecretsKeyMissing: (503, "Secrets key not configured"),
}


def install(app: Flask) -> None:
    """Answer every error, including Flask's own 404/405/413, as problem+json."""

    @app.errorhandler(InvalidRequest)
    def _invalid(exc: InvalidRequest) -> Response:
        return invalid(exc.errors)

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> Response:
        status, title = SERVICE_ERRORS.get(type(exc), (400, "Bad request"))
        if status == 400:  # found by a use case, not a model: no field to name
            return problem(
                400, title, exc.detail, errors=[FieldError(field=None, detail=exc.detail)]
            )
        return problem(status, title, exc.detail)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        response = problem(status, exc.name, exc.description or exc.name)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="reconciler"'
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        app.logger.exception("unhandled error")
        return problem(500, "Internal Server Error", "the server could not handle the request")
