"""The gateways' HTTP client goes through a proxy set in the environment, as requests did."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from reconciler.adapters.gateways.base import TransientError
from reconciler.adapters.gateways.simulator import SimulatorGateway
from reconciler.adapters.gateways.transport import HttpClient
from reconciler.config import GatewayConfig
from reconciler.domain.status import Status


class Recorder(ThreadingHTTPServer):
    """An HTTP server that answers every GET as the simulator would and keeps request lines."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, dict[str, str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

    def do_GET(self) -> None:
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        body = json.dumps({"id": "sim_1", "status": "processing"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Recorder]:
    recorder = Recorder()
    thread = threading.Thread(target=recorder.serve_forever, daemon=True)
    thread.start()
    yield recorder
    recorder.shutdown()
    recorder.server_close()


def fetch_through(client: HttpClient, api_base: str) -> Status:
    config = GatewayConfig("simulator", api_base=api_base, api_key="sk_sim")
    gateway = SimulatorGateway(config, session=client, timeout=(1, 2), create_timeout=(1, 2))
    return gateway.fetch_payment("sim_1").status


# A host that does not resolve: only a proxy can answer for it.
GATEWAY = "http://gateway.invalid"


def test_a_proxy_in_the_environment_carries_the_call(
    server: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with HttpClient() as client:
        assert fetch_through(client, GATEWAY) is Status.PENDING
    ((path, headers),) = server.seen
    assert path == f"{GATEWAY}/v1/payments/sim_1"  # the absolute form: a proxy request
    assert headers["authorization"] == "Bearer sk_sim"


def test_proxy_credentials_in_its_url_are_sent_to_the_proxy(
    server: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", server.url.replace("http://", "http://ops:s3cret@"))
    with HttpClient() as client:
        fetch_through(client, GATEWAY)
    ((_, headers),) = server.seen
    assert headers["proxy-authorization"] == "Basic b3BzOnMzY3JldA=="


def test_a_host_in_no_proxy_is_called_directly(
    server: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens: unusable
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with HttpClient() as client:
        assert fetch_through(client, server.url) is Status.PENDING
    ((path, _),) = server.seen
    assert path == "/v1/payments/sim_1"


def test_without_a_proxy_an_unresolvable_host_is_a_connection_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with HttpClient() as client, pytest.raises(TransientError, match="connection error"):
        fetch_through(client, GATEWAY)
