"""Local stand-ins for real gateways: real HTTP on loopback, in-memory state, fault hooks.

Each fake reproduces the gateway's public API shapes (paths, auth, error bodies, webhook
signatures) closely enough that the adapters cannot tell the difference, and lets a test
inject the failures a real gateway produces: 429, 5xx, and answers slower than a timeout.
Signatures are computed here with `hmac` directly, never with the adapter's helpers, so a
test compares two independent implementations of the scheme.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response


@dataclass
class Fault:
    """One injected answer: an HTTP status with the gateway's error body and extra headers."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)


class FakeGateway:
    """Base class: serve `handle(request)` on loopback in a background thread."""

    def __init__(self) -> None:
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._released = threading.Event()
        self.delay_s = 0.0  # answers wait this long after the work (a slow or hanging gateway)
        self.delay_only: tuple[str, str] | None = None  # (method, path prefix) to delay, or all
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request served

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("fake gateway not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeGateway:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()  # wake any handler still sleeping on `delay_s`
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def fail_next(
        self, status: int, *, times: int = 1, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer the next `times` requests with `status` and the gateway's error body."""
        with self._lock:
            self._faults.extend(Fault(status, dict(headers or {})) for _ in range(times))

    def calls(self, method: str, path_prefix: str = "") -> int:
        """Count the requests served with this method whose path starts with the prefix."""
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and p.startswith(path_prefix))

    # Subclasses implement these two.
    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def error_body(self, status: int) -> dict[str, Any]:
        raise NotImplementedError

    def json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
        return Response(
            json.dumps(body),
            status=status,
            headers=dict(headers or {}),
            mimetype="application/json",
        )

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self._lock:
            self.requests.append((request.method, request.path))
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            response = self.json(fault.status, self.error_body(fault.status), fault.headers)
        else:
            response = self.handle(request)
        method, prefix = self.delay_only or (request.method, "")
        if self.delay_s and request.method == method and request.path.startswith(prefix):
            # The work is done but the answer is late: what a client sees as a lost response.
            self._released.wait(self.delay_s)
        return response(environ, start_response)
