"""One way to call a gateway over HTTP: explicit timeouts, no hidden retries, errors mapped."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import urllib3
from requests.structures import CaseInsensitiveDict

from reconciler.adapters.gateways.base import (
    AuthError,
    Headers,
    HttpAnswer,
    NotFoundError,
    RequestRejected,
    TransientError,
)
from reconciler.adapters.gateways.transport import HttpClient, Timeout
from reconciler.domain.policy import parse_retry_after

__all__ = ["HttpClient", "Timeout", "call", "case_insensitive", "header", "json_body"]

_errors = urllib3.exceptions


def call(
    client: HttpClient, method: str, url: str, *, timeout: Timeout, **kwargs: Any
) -> HttpAnswer:
    """Send one request and map every failure onto the gateway error taxonomy."""
    try:
        response = client.request(method, url, timeout=timeout, **kwargs)
    except (_errors.NewConnectionError, _errors.ProtocolError, _errors.SSLError) as exc:
        # NewConnectionError is also a ConnectTimeoutError: a refusal is not a timeout.
        raise TransientError(f"connection error: {method} {url}") from exc
    except _errors.ProxyError as exc:
        raise TransientError(f"connection error: {method} {url} (proxy)") from exc
    except _errors.TimeoutError as exc:
        raise TransientError(f"timeout: {method} {url}") from exc
    except _errors.HTTPError as exc:
        raise TransientError(f"request failed: {exc}") from exc
    status = response.status_code
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
        raise TransientError(
            f"HTTP {status} from {method} {url}", retry_after=retry_after, response=response
        )
    if status in (401, 403):
        raise AuthError(
            f"HTTP {status} from {method} {url}: credentials rejected", response=response
        )
    if status == 404:
        raise NotFoundError(f"HTTP 404 from {method} {url}", response=response)
    if status >= 400:
        raise RequestRejected(
            f"HTTP {status} from {method} {url}: {response.text[:300]}", response=response
        )
    return response


def json_body(response: HttpAnswer) -> dict[str, Any]:
    """Decode a JSON object body; a gateway answering garbage is a transient fault."""
    try:
        body = response.json()
    except ValueError as exc:
        raise TransientError(f"non-JSON answer from {response.url}") from exc
    if not isinstance(body, dict):
        raise TransientError(f"unexpected JSON answer from {response.url}")
    return body


def header(headers: Headers, name: str) -> str | None:
    """Read a header whatever its case (Flask's headers are; a plain dict in a test is not)."""
    if isinstance(headers, CaseInsensitiveDict):
        found: str | None = headers.get(name)
        return found
    return case_insensitive(headers).get(name)


def case_insensitive(headers: Headers) -> CaseInsensitiveDict[str]:
    """Copy headers once into a case-insensitive mapping (each lookup then costs nothing)."""
    return CaseInsensitiveDict(
        {key: headers[key] for key in headers.keys()}  # noqa: SIM118 (Flask iterates pairs)
    )
