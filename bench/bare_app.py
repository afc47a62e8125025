"""The ceiling for webhook ingestion: a WSGI app that reads the body and answers 200."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b'{"received":true}'


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(length)
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]
    )
    return [BODY]
