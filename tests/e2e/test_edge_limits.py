"""Limits on the production server: 413 however the body comes, 431 as problem+json."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support.app import SIM_SECRET

from e2e.conftest import Service, free_port, run_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp: Path = tmp_path_factory.mktemp("limits")
    with run_service(
        tmp, port=free_port(), simulator_url="http://127.0.0.1:9", webhook_secret=SIM_SECRET
    ) as running:
        yield running


def chunks(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), 8192):
        yield body[start : start + 8192]


@pytest.mark.parametrize("path", ["/webhooks/simulator", "/v1/payments"])
@pytest.mark.parametrize("size", [LIMIT + 1000, 200 * 1024])
@pytest.mark.parametrize("chunked", [False, True])
def test_an_oversized_body_is_a_413_with_connection_close_however_it_is_sent(
    service: Service, path: str, size: int, chunked: bool
) -> None:
    body = b"{" + b" " * (size - 2) + b"}"
    data = chunks(body) if chunked else body
    response = requests.post(f"{service.url}{path}", data=data, timeout=10)
    assert response.status_code == 413, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Connection"] == "close"
    assert response.json()["status"] == 413
    # The connection is closed on purpose; the next request on a new one is answered.
    assert requests.get(f"{service.url}/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize(
    "headers, path",
    [
        ({"X-Big": "a" * 40_000}, "/healthz"),
        ({}, "/v1/payments/" + "a" * 40_000),  # the request line counts with the headers
    ],
)
def test_oversized_headers_or_url_are_a_431_problem(
    service: Service, headers: dict[str, str], path: str
) -> None:
    response = requests.get(f"{service.url}{path}", headers=headers, timeout=10)
    assert response.status_code == 431
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 431
