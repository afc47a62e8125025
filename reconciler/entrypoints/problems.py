"""RFC 9457 problem responses for every error the API gives."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

from reconciler.services.errors import ServiceError

PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    body = {
        "type": f"https://reconciler.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    return Response(json.dumps(body), status=status, mimetype=PROBLEM)


def install(app: Flask) -> None:
    """Answer every error, including Flask's own 404/405/413, as problem+json."""

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> Response:
        return problem(exc.status, exc.title, exc.detail)

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
