"""Who is asking: the merchant whose API key a `/v1` request presents; the app's context."""

from __future__ import annotations

from flask import current_app, g, request
from werkzeug.exceptions import Unauthorized

from reconciler.adapters.models import Merchant
from reconciler.bootstrap import Context
from reconciler.services import merchants


def ctx() -> Context:
    """Return the service context of the app serving this request."""
    context: Context = current_app.extensions["reconciler"]
    return context


def authenticate() -> None:
    """Find the merchant behind the request's API key, or answer 401 (a `before_request`)."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("send your API key as `Authorization: Bearer <key>`")
    merchant = merchants.authenticate(ctx(), key.strip())
    if merchant is None:
        raise Unauthorized("unknown API key")
    g.merchant = merchant


def merchant() -> Merchant:
    """Return the merchant `authenticate` found for this request."""
    found: Merchant = g.merchant
    return found
