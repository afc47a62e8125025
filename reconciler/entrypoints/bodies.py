"""Read a request body with a size limit checked before and after reading."""

from __future__ import annotations

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge


def read_body(limit: int) -> bytes:
    """Return the raw body, or raise 413 when it is over `limit` bytes."""
    # Content-Length may be absent (chunked) or lie: check the bytes read as well.
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge(f"the body is over {limit} bytes")
    body = request.get_data(cache=True)
    if len(body) > limit:
        raise RequestEntityTooLarge(f"the body is over {limit} bytes")
    return body
