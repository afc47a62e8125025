"""Headers on every `/admin` answer: never cached; the page's security headers on `/admin/ui`.

Installed on the app, not the blueprints, so that answers no view made (a 404 for a path
no route matches, a 405, a 503 while the database is locked) carry them too.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.wrappers import Response

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
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def install(app: Flask) -> None:
    """Add the headers to every answer under `/admin`, whoever made it."""

    @app.after_request
    def _admin_headers(response: Response) -> Response:
        path = request.path
        if path != "/admin" and not path.startswith("/admin/"):
            return response
        # Tokens, payments and merchants' data: no browser or proxy keeps a copy.
        response.headers["Cache-Control"] = "no-store"
        if path == "/admin/ui" or path.startswith("/admin/ui/"):
            response.headers.update(PAGE_HEADERS)
        return response
