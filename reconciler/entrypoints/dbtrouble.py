"""Database trouble on the request path: bounded waits, then a 503 with `Retry-After`.

Every request's transactions wait at most `db.REQUEST_WAIT_S` for a lock or a statement
(the sweep keeps its longer patience). A database that is locked, down or gone is then
a `503` problem the client retries — never a 500, never a half-minute hang.
"""

from __future__ import annotations

import contextlib
import logging

from flask import Flask, Response, g

from reconciler.adapters import db
from reconciler.adapters.db import TROUBLE, describe
from reconciler.entrypoints.problems import problem

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2


def unavailable(reason: str) -> Response:
    """Say the database cannot take the request now, and when to try again."""
    response = problem(
        503,
        "Database Unavailable",
        f"the database cannot take this request now ({reason}); try again shortly",
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def install(app: Flask) -> None:
    """Bound every request's database waits and answer database trouble with a 503."""

    @app.before_request
    def _bound_waits() -> None:
        g.reconciler_db_wait = db.set_request_wait()

    @app.teardown_request
    def _unbound_waits(_exc: BaseException | None) -> None:
        token = g.pop("reconciler_db_wait", None)
        if token is not None:
            # Set in another context (it should not happen): then there is nothing to undo.
            with contextlib.suppress(ValueError):
                db.reset_wait(token)

    def _database_trouble(exc: Exception) -> Response:
        reason = describe(exc)
        log.warning("database unavailable", extra={"reason": reason, "error": str(exc)[:300]})
        return unavailable(reason)

    for trouble in TROUBLE:
        app.register_error_handler(trouble, _database_trouble)
