"""A minimal gateway for the scale run: the simulator's fetch API at a fixed latency.

`python -m bench.fake_gateway --latency 0.05` serves, on loopback, HTTP/1.1 with keep-alive
on one asyncio loop (the simulator's Flask/Werkzeug server cannot sustain a thousand
requests per second on two shared cores):

- `GET /v1/payments/<id>` answers `{"id", "status": "processing", …}` after exactly the
  latency, the shape `SimulatorGateway.fetch_payment` reads;
- `GET /_fake/stats` answers the counters: calls, calls that overlapped an unanswered
  call for the same id (a row polled twice at once), the most calls in flight, and the
  server's own CPU seconds;
- `POST /_fake/reset` zeroes them.

Ids starting with `ceiling` are answered but not tracked per id (the ceiling measurement
sends one id from many connections at once).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

UPDATED_AT = "2026-01-01T00:00:00+00:00"


class Stats:
    """What the server saw since the last reset."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.per_id: dict[str, int] = {}  # calls in flight per payment id
        self.reset()

    def reset(self) -> None:
        """Zero the counters (calls in flight stay: they are still in flight)."""
        self.calls = 0
        self.overlaps = 0
        self.overlap_ids: list[str] = []
        self.max_in_flight = self.in_flight
        self.ids: set[str] = set()

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "overlaps": self.overlaps,
            "overlap_ids": self.overlap_ids[:20],
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "distinct_ids": len(self.ids),
            "cpu_s": round(time.process_time(), 3),
            "at": time.time(),
        }


class GatewayProtocol(asyncio.Protocol):
    """One keep-alive connection; answers in order, each after the latency."""

    def __init__(self, stats: Stats, latency_s: float) -> None:
        self.stats = stats
        self.latency_s = latency_s
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            method, path, _ = head.split("\r\n", 1)[0].split(" ", 2)
            self.handle(method, path)

    def handle(self, method: str, path: str) -> None:
        if method == "GET" and path.startswith("/v1/payments/"):
            payment_id = path[len("/v1/payments/") :]
            self.start_call(payment_id)
            self.loop.call_later(self.latency_s, self.answer_call, payment_id)
        elif method == "GET" and path == "/_fake/stats":
            self.send(200, self.stats.as_dict())
        elif method == "POST" and path == "/_fake/reset":
            self.stats.reset()
            self.send(200, {"reset": True})
        else:
            self.send(404, {"title": "not found"})

    def start_call(self, payment_id: str) -> None:
        stats = self.stats
        stats.calls += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        if payment_id.startswith("ceiling"):
            return
        stats.ids.add(payment_id)
        now = stats.per_id.get(payment_id, 0) + 1
        stats.per_id[payment_id] = now
        if now > 1:
            stats.overlaps += 1
            stats.overlap_ids.append(payment_id)

    def answer_call(self, payment_id: str) -> None:
        stats = self.stats
        stats.in_flight -= 1
        if not payment_id.startswith("ceiling"):
            left = stats.per_id.get(payment_id, 1) - 1
            if left > 0:
                stats.per_id[payment_id] = left
            else:
                stats.per_id.pop(payment_id, None)
        self.send(
            200,
            {
                "id": payment_id,
                "status": "processing",
                "amount": 1000,
                "currency": "USD",
                "updated_at": UPDATED_AT,
            },
        )

    def send(self, status: int, body: dict[str, Any]) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        payload = json.dumps(body).encode()
        reason = "OK" if status == 200 else "Not Found"
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        self.transport.write(head + payload)


async def serve(host: str, port: int, latency_s: float) -> None:
    stats = Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: GatewayProtocol(stats, latency_s), host, port, backlog=1024
    )
    bound = server.sockets[0].getsockname()
    print(f"fake gateway listening on http://{bound[0]}:{bound[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_gateway", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before each answer")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.latency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
