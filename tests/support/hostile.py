"""Hostile merchant receivers on loopback: raw sockets that drip, hang or never end.

Each reads the request as a receiver would, then misbehaves in one way, until the sender
closes the connection. Every connection is kept with its `webhook-id` and when it opened
and closed, so a test can check that no delivery was ever in flight twice at once.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

MODES = ("drip_headers", "drip_body", "hang_after_headers", "endless_chunked")


@dataclass
class Connection:
    webhook_id: str
    opened: float  # time.monotonic()
    closed: float | None = None


@dataclass
class Hostile:
    url: str
    mode: str
    interval_s: float
    connections: list[Connection] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def finished(self) -> list[Connection]:
        with self.lock:
            return [c for c in self.connections if c.closed is not None]

    def overlapping(self) -> list[str]:
        """The webhook-ids that had two connections open at once."""
        with self.lock:
            spans = sorted((c.webhook_id, c.opened, c.closed) for c in self.connections)
        overlaps = []
        for (a_id, _, a_end), (b_id, b_start, _) in zip(spans, spans[1:], strict=False):
            if a_id == b_id and (a_end is None or b_start < a_end):
                overlaps.append(a_id)
        return overlaps


def _read_request(conn: socket.socket) -> str:
    """Read one request's head and body; return its webhook-id."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return ""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return headers.get("webhook-id", "")


def _misbehave(conn: socket.socket, mode: str, interval_s: float) -> None:
    """Answer badly until the peer closes (a readable socket with nothing to read)."""
    if mode == "drip_headers":
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
    elif mode == "drip_body":
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
    elif mode == "hang_after_headers":
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    elif mode == "endless_chunked":
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    n = 0
    while True:
        readable, _, _ = select.select([conn], [], [], interval_s)
        if readable and not conn.recv(1):
            return
        n += 1
        if mode == "drip_headers":
            conn.sendall(f"X-Drip-{n}: a\r\n".encode())
        elif mode == "drip_body":
            conn.sendall(b"x")
        elif mode == "endless_chunked":
            conn.sendall(b"1\r\nx\r\n")


@contextmanager
def run_hostile(
    mode: str, *, interval_s: float = 0.2, tls: tuple[str, str] | None = None
) -> Iterator[Hostile]:
    """Serve one hostile behaviour on a free loopback port; `tls` is (certificate, key)."""
    assert mode in MODES, mode
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    scheme = "https" if tls else "http"
    state = Hostile(f"{scheme}://127.0.0.1:{listener.getsockname()[1]}/hook", mode, interval_s)
    context = None
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        record: Connection | None = None
        try:
            if context is not None:
                conn = context.wrap_socket(conn, server_side=True)
            with conn:
                webhook_id = _read_request(conn)
                record = Connection(webhook_id, time.monotonic())
                with state.lock:
                    state.connections.append(record)
                _misbehave(conn, mode, interval_s)
        except OSError:
            pass  # the sender cut us off: what it is meant to do
        finally:
            if record is not None:
                with state.lock:
                    record.closed = time.monotonic()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
