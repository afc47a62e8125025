"""One way to call a gateway over HTTP: explicit timeouts, no hidden retries, errors mapped."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime
from typing import Any

import requests
from requests.structures import CaseInsensitiveDict

from reconciler.adapters.gateways.base import (
    AuthError,
    Headers,
    NotFoundError,
    RequestRejected,
    TransientError,
)
from reconciler.domain.policy import parse_retry_after

Timeout = tuple[float, float]  # (connect, read) seconds


def new_session(pool_size: int = 32) -> requests.Session:
    """Build a session with a connection pool and no automatic retries (the sweep retries)."""
    session = requests.Session()
    # Without a proxy in the environment, skip requests' per-call look through it (proxy
    # variables, .netrc): it cost a tenth of a poll's CPU. With one, keep it honoured.
    session.trust_env = bool(urllib.request.getproxies())
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=4, pool_maxsize=pool_size, max_retries=0
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def call(
    session: requests.Session,
    method: str,
    url: str,
    *,
    timeout: Timeout,
    **kwargs: Any,
) -> requests.Response:
    """Send one request and map every failure onto the gateway error taxonomy."""
    try:
        response = session.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
    except requests.Timeout as exc:
        raise TransientError(f"timeout: {method} {url}") from exc
    except requests.ConnectionError as exc:
        raise TransientError(f"connection error: {method} {url}") from exc
    except requests.RequestException as exc:
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


def json_body(response: requests.Response) -> dict[str, Any]:
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
