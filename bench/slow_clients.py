"""Slow clients: can sockets that trickle their headers or body starve `reconciler serve`?

`python -m bench.slow_clients [--slow-headers 200] [--slow-bodies 20] [--duration 30]`

Starts `reconciler serve` (temp SQLite, a simulator webhook secret), then for `duration`
seconds keeps N slow-header sockets (`GET /healthz`, then one header line every 2 s)
and M slow-body sockets (`POST /webhooks/simulator` declaring `Content-Length: 1000`, then
one byte every 2 s) open — a socket the server cuts is replaced at once — while a probe
client on fresh connections asks `/healthz` and sends a validly signed webhook every
0.1 s each. Prints the probes' latency (p50/p99/max), how many failed, and after how long
the server cut the slow sockets. `--json` prints the figures as JSON (the e2e test uses it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from standardwebhooks import Webhook

from reconciler.config import Settings
from reconciler.demo.scoring import percentile
from reconciler.demo.stack import free_port, new_webhook_secret, stop_process

TRICKLE_EVERY_S = 2.0
PROBE_EVERY_S = 0.1


@dataclass
class SlowSocket:
    sock: socket.socket
    kind: str  # "header" or "body"
    opened: float
    sent: int = 0


@dataclass
class Attack:
    """Keep slow sockets open against `port`; note when the server cuts them."""

    port: int
    headers: int
    bodies: int
    cut_after_s: list[float] = field(default_factory=list)
    first_cut_at: float | None = None
    opened: int = 0
    open_now: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def _open(self, kind: str) -> SlowSocket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        if kind == "header":
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n")
        else:
            sock.sendall(
                b"POST /webhooks/simulator HTTP/1.1\r\nHost: bench\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            )
        sock.setblocking(False)
        self.opened += 1
        return SlowSocket(sock, kind, time.monotonic())

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        live: dict[socket.socket, SlowSocket] = {}
        for kind, count in (("header", self.headers), ("body", self.bodies)):
            for _ in range(count):
                slow = self._open(kind)
                live[slow.sock] = slow
                selector.register(slow.sock, selectors.EVENT_READ)
        next_trickle = time.monotonic() + TRICKLE_EVERY_S
        while not self.stop.is_set():
            self.open_now = len(live)
            timeout = max(0.0, next_trickle - time.monotonic())
            for key, _ in selector.select(timeout=min(timeout, 0.2)):
                slow = live[key.fileobj]  # type: ignore[index]
                if self._closed_by_server(slow):
                    self._replace(selector, live, slow)
            if time.monotonic() >= next_trickle:
                next_trickle += TRICKLE_EVERY_S
                for slow in list(live.values()):
                    chunk = b"X-Slow: 1\r\n" if slow.kind == "header" else b" "
                    try:
                        slow.sock.send(chunk)
                        slow.sent += len(chunk)
                    except OSError:
                        self._replace(selector, live, slow)
        for slow in live.values():
            selector.unregister(slow.sock)
            slow.sock.close()

    def _closed_by_server(self, slow: SlowSocket) -> bool:
        try:
            slow.sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            pass
        # Closed, reset, or answered (a 4xx): either way the socket no longer holds anything.
        return True

    def _replace(
        self, selector: selectors.BaseSelector, live: dict[socket.socket, SlowSocket], old: Any
    ) -> None:
        now = time.monotonic()
        self.cut_after_s.append(now - old.opened)
        if self.first_cut_at is None:
            self.first_cut_at = now
        selector.unregister(old.sock)
        del live[old.sock]
        old.sock.close()
        if self.stop.is_set():
            return
        try:
            new = self._open(old.kind)
        except OSError:
            return
        live[new.sock] = new
        selector.register(new.sock, selectors.EVENT_READ)


@dataclass
class Probe:
    """Ask `/healthz` and send a signed webhook on fresh connections, and time the answers."""

    url: str
    secret: str
    path: str
    results: list[tuple[float, float, int]] = field(default_factory=list)  # (at, latency, code)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        signer = Webhook(self.secret)
        n = 0
        while not self.stop.is_set():
            n += 1
            started = time.monotonic()
            try:
                if self.path == "/healthz":
                    response = requests.get(f"{self.url}/healthz", timeout=10)
                else:
                    body = json.dumps(
                        {
                            "type": "payment.processing",
                            "data": {
                                "id": f"slow_bench_{n}",
                                "status": "processing",
                                "updated_at": datetime.now(UTC).isoformat(),
                            },
                        }
                    )
                    msg_id = f"msg_slow_{os.getpid()}_{n}"
                    headers = {
                        "webhook-id": msg_id,
                        "webhook-timestamp": str(int(time.time())),
                        "webhook-signature": signer.sign(msg_id, datetime.now(UTC), body),
                        "Content-Type": "application/json",
                    }
                    response = requests.post(
                        f"{self.url}{self.path}", data=body, headers=headers, timeout=10
                    )
                code = response.status_code
            except requests.RequestException:
                code = 0
            self.results.append((started, time.monotonic() - started, code))
            self.stop.wait(PROBE_EVERY_S)


def _start_service(workdir: Path, port: int, secret: str, client_timeout: float | None) -> Any:
    changes: dict[str, Any] = {
        "database_url": f"sqlite:///{workdir / 'slow.db'}",
        "simulator_webhook_secret": (secret,),
        "log_level": "WARNING",
    }
    if client_timeout is not None:
        changes["client_timeout_s"] = client_timeout
    env = Settings().child_env(**changes)
    log = (workdir / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler.entrypoints.cli", "serve", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return process
        if process.poll() is not None:
            break
        time.sleep(0.2)
    stop_process(process)
    raise RuntimeError(f"reconciler serve did not start: {(workdir / 'serve.log').read_text()}")


def _stats(values: list[float]) -> dict[str, float | None]:
    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 1)

    return {
        "p50_ms": ms(percentile(values, 50)),
        "p99_ms": ms(percentile(values, 99)),
        "max_ms": ms(max(values) if values else None),
    }


def _cuts(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"min": None, "p50": None, "max": None}
    return {
        "min": round(min(values), 2),
        "p50": round(percentile(values, 50) or 0.0, 2),
        "max": round(max(values), 2),
    }


def run(headers: int, bodies: int, duration: float, client_timeout: float | None) -> dict[str, Any]:
    """Attack a fresh `reconciler serve` for `duration` s and return the figures."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-slow-"))
    port = free_port()
    secret = new_webhook_secret()
    process = _start_service(workdir, port, secret, client_timeout)
    url = f"http://127.0.0.1:{port}"
    try:
        attack = Attack(port, headers, bodies)
        attacker = threading.Thread(target=attack.run, name="attack")
        attacker.start()
        time.sleep(1.0)  # every slow socket is open before the probes start
        probes = [Probe(url, secret, "/healthz"), Probe(url, secret, "/webhooks/simulator")]
        threads = [threading.Thread(target=p.run, name=p.path) for p in probes]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(max(0.0, duration - 1.0))
        open_at_end = attack.open_now
        for p in probes:
            p.stop.set()
        for thread in threads:
            thread.join()
        attack.stop.set()
        attacker.join()
        alive = process.poll() is None
    finally:
        stop_process(process)
    result: dict[str, Any] = {
        "slow_headers": headers,
        "slow_bodies": bodies,
        "duration_s": duration,
        "client_timeout_s": client_timeout,
        "slow_sockets_opened": attack.opened,
        "slow_sockets_open_at_end": open_at_end,
        "slow_sockets_cut": len(attack.cut_after_s),
        "cut_after_s": _cuts(attack.cut_after_s),
        "service_alive": alive,
    }
    first_cut = attack.first_cut_at
    for p in probes:
        name = "healthz" if p.path == "/healthz" else "webhook"
        latencies = [latency for _, latency, _ in p.results]
        result[name] = {
            "probes": len(p.results),
            "ok": sum(1 for _, _, code in p.results if 200 <= code < 300),
            "failed": [code for _, _, code in p.results if not 200 <= code < 300],
            "over_1s": sum(1 for v in latencies if v > 1.0),
            "answered_before_first_cut": sum(
                1
                for at, latency, code in p.results
                if 200 <= code < 300 and (first_cut is None or at + latency < first_cut)
            ),
            **_stats(latencies),
        }
    result["probing_s"] = round(time.monotonic() - started, 1)
    return result


def render(result: dict[str, Any]) -> str:
    cut = result["cut_after_s"]
    lines = [
        f"slow clients: {result['slow_headers']} slow-header + {result['slow_bodies']} "
        f"slow-body sockets held open for {result['duration_s']:g} s "
        f"(client timeout {result['client_timeout_s'] or 'default'})",
    ]
    for name in ("healthz", "webhook"):
        row = result[name]
        lines.append(
            f"  {name:<8} {row['ok']}/{row['probes']} answered 2xx   p50 {row['p50_ms']} ms"
            f"   p99 {row['p99_ms']} ms   max {row['max_ms']} ms   over 1 s: {row['over_1s']}"
        )
    lines.append(
        f"  slow sockets: {result['slow_sockets_opened']} opened, {result['slow_sockets_cut']}"
        f" cut by the server after {cut['min']}–{cut['max']} s (p50 {cut['p50']} s),"
        f" {result['slow_sockets_open_at_end']} open at the end"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_clients", description=__doc__)
    parser.add_argument("--slow-headers", type=int, default=200)
    parser.add_argument("--slow-bodies", type=int, default=20)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument(
        "--client-timeout", type=float, default=None, help="RECONCILER_CLIENT_TIMEOUT_S"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    result = run(args.slow_headers, args.slow_bodies, args.duration, args.client_timeout)
    print(json.dumps(result, indent=2) if args.json else render(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
