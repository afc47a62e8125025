"""A loopback HTTP receiver for notification tests: scripted answers, every request kept."""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = 0.0  # time.monotonic() when the request was read

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


Answer = tuple[int, dict[str, str]]


@dataclass
class Receiver:
    """A loopback HTTP server answering with a scripted status and headers."""

    url: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None  # when set, answer only once it is released
    delay_s: float = 0.0  # answer this long after reading the request
    # Per-request answer; overrides `status` and `headers` when set.
    script: Callable[[Received], Answer] | None = None
    received: list[Received] = field(default_factory=list)
    in_flight: Counter[str] = field(default_factory=Counter)  # per webhook-id, right now
    most_at_once: Counter[str] = field(default_factory=Counter)  # per webhook-id, ever
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def ids(self) -> list[str]:
        """The `webhook-id` of every request, in arrival order."""
        with self._lock:
            return [r.webhook_id for r in self.received]

    def hanging(self) -> int:
        """How many requests are read and not answered yet."""
        with self._lock:
            return sum(self.in_flight.values())


@contextmanager
def run_receiver(tls: tuple[str, str] | None = None) -> Iterator[Receiver]:
    """Serve on a free loopback port; `tls` is (certificate, key) to serve https."""
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            request = Received(self.path, dict(self.headers), body, time.monotonic())
            key = request.webhook_id
            with state._lock:
                state.received.append(request)
                state.in_flight[key] += 1
                state.most_at_once[key] = max(state.most_at_once[key], state.in_flight[key])
            try:
                if state.hold is not None:
                    state.hold.wait(10)
                if state.delay_s:
                    time.sleep(state.delay_s)
                status, headers = (
                    state.script(request) if state.script else (state.status, state.headers)
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the sender gave up (timeout) and closed the connection
            finally:
                with state._lock:
                    state.in_flight[key] -= 1

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 128
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    if state.hold is not None:
        state.hold.set()
    server.shutdown()
    server.server_close()
