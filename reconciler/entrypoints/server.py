"""The production HTTP server: waitress, with deadlines for slow clients and a clean stop.

Longer than most modules: the server, its limits and its signal handling are one lifecycle.

Why waitress: its I/O thread reads a whole request (headers and body) before a worker
thread takes it, so a client that trickles its headers or body costs one socket and a
buffer, never one of the request threads. A request that is not complete within
`RECONCILER_CLIENT_TIMEOUT_S` of its first byte, and a connection idle for as long, is
cut. Size limits are enforced while reading, chunked or not, and answered as problem+json
with `Connection: close`.

Signals: SIGTERM, SIGINT and SIGHUP all stop the process the same way — stop accepting,
stop the sweep (calls under way end within the gateway timeouts, calls not started are
cancelled and their rows claimed again after the lease), answer the requests already
read, then exit 0. There is no reload: restart the process to change settings.

`RECONCILER_WORKERS` > 1 forks that many serving processes on one listening socket; the
parent restarts one that dies and passes stop signals on.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import signal
import socket
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

from flask import Flask
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher

from reconciler.config import ConfigError, Settings
from reconciler.entrypoints.problems import problem

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(frozen=True)
class ServerOptions:
    """How the server treats connections; each has a `RECONCILER_*` variable."""

    threads: int = 8  # RECONCILER_THREADS: request threads per process
    workers: int = 1  # RECONCILER_WORKERS: serving processes
    client_timeout_s: float = 10.0  # RECONCILER_CLIENT_TIMEOUT_S: whole request / idle
    max_connections: int = 1000  # RECONCILER_MAX_CONNECTIONS: open sockets per process
    max_header_bytes: int = 32 * 1024  # request line and headers; over it: 431
    max_body_bytes: int = 64 * 1024  # RECONCILER_MAX_BODY_BYTES; over it: 413
    graceful_s: float = 20.0  # how long a stop waits for requests already read

    @classmethod
    def from_env(cls, settings: Settings) -> ServerOptions:
        """Take the server's settings (declared, with the rest, in `reconciler.config`)."""
        return cls(
            threads=max(1, settings.threads),
            workers=max(1, settings.workers),
            client_timeout_s=settings.client_timeout_s,
            max_connections=_within_file_limit(settings.max_connections),
            max_body_bytes=settings.max_body_bytes,
        )

    def adjustments(self, host: str, port: int) -> Adjustments:
        return Adjustments(
            listen=f"{host}:{port}" if ":" not in host else f"[{host}]:{port}",
            threads=self.threads,
            connection_limit=self.max_connections,
            channel_timeout=self.client_timeout_s,
            # Deadlines are checked this often (waitress' default is every 30 s).
            cleanup_interval=min(1.0, self.client_timeout_s / 4),
            max_request_header_size=self.max_header_bytes,
            max_request_body_size=self.max_body_bytes,
            asyncore_use_poll=True,  # select() stops at file descriptor 1024
            asyncore_loop_timeout=1,
            expose_tracebacks=False,
            ident="reconciler",
            backlog=2048,
        )


def _within_file_limit(connections: int) -> int:
    """Leave room under the process's open-file limit for the database and gateway sockets."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return connections
    return max(16, min(connections, soft - 128))


class _ProblemErrorTask(ErrorTask):  # type: ignore[misc]
    """Answer the server's own errors (400, 413, 431) as problem+json and close."""

    def execute(self) -> None:
        error = self.request.error
        detail = {
            413: f"the body is over {self.channel.adj.max_request_body_size} bytes",
            431: "the request line and headers are over "
            f"{self.channel.adj.max_request_header_size} bytes",
        }.get(error.code, str(error.body) or error.reason)
        response = problem(error.code, error.reason, detail)
        body = response.get_data()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", response.content_type))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):  # type: ignore[misc]
    """A connection that remembers when the request it is reading began."""

    error_task_class = _ProblemErrorTask
    _timed_request: Any = None
    request_started: float | None = None

    def received(self, data: bytes) -> bool:
        result: bool = super().received(data)
        if self.request is not self._timed_request:
            self._timed_request = self.request
            self.request_started = time.monotonic() if self.request is not None else None
        return result


class _Server(TcpWSGIServer):  # type: ignore[misc]
    """waitress' TCP server, with a deadline for reading one request."""

    channel_class = _Channel

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle connections (channel_timeout)
        cutoff = time.monotonic() - self.adj.channel_timeout
        for channel in list(self.active_channels.values()):
            started = getattr(channel, "request_started", None)
            if started is not None and started < cutoff and not channel.requests:
                # Headers or body still trickling in after the deadline: cut the socket.
                channel.will_close = True


def bind_problem(host: str, port: int, exc: OSError) -> str:
    """Say in one line why the address cannot be bound, and which variable changes it."""
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is taken; set RECONCILER_PORT (or --port) to a free port"
    if exc.errno == errno.EACCES:
        return f"binding port {port} needs privileges; set RECONCILER_PORT to 1024 or above"
    reason = exc.strerror or str(exc)
    return f"cannot listen on {host}:{port} ({reason}); check RECONCILER_HOST and RECONCILER_PORT"


def bind(options: ServerOptions, host: str, port: int) -> list[socket.socket]:
    """Open the listening sockets (one per address the host name resolves to)."""
    sockets = []
    for family, socktype, proto, address in options.adjustments(host, port).listen:
        sock = socket.socket(family, socktype, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(2048)
        sockets.append(sock)
    return sockets


class Server:
    """One serving process: the app, its sweep, and waitress on the given sockets."""

    def __init__(self, app: Flask, options: ServerOptions, sockets: list[socket.socket]) -> None:
        self.app = app
        self.options = options
        adj = options.adjustments(*sockets[0].getsockname()[:2])
        self.map: dict[int, Any] = {}
        self.dispatcher = ThreadedTaskDispatcher()
        self.dispatcher.set_thread_count(options.threads)
        self.servers = [
            _Server(
                app,
                self.map,
                _sock=sock,
                dispatcher=self.dispatcher,
                adj=adj,
                bind_socket=False,
                sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()),
            )
            for sock in sockets
        ]
        self._stop = threading.Event()

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        """Ask the loop to stop (a signal handler); it wakes at once."""
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        self._stop.set()
        for server in self.servers:
            server.pull_trigger()

    def run(self) -> int:
        """Serve until a stop signal, then drain and exit."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.request_stop)
        addresses = [f"{s.effective_host}:{s.effective_port}" for s in self.servers]
        log.info("serving", extra={"address": ", ".join(addresses), "pid": os.getpid()})
        while not self._stop.is_set():
            wasyncore.loop(timeout=1.0, map=self.map, use_poll=True, count=1)
        self._drain()
        return 0

    def _drain(self) -> None:
        for server in self.servers:
            server.accepting = False
            server.close()
        sweep_stopped = threading.Thread(target=self._stop_sweep, name="stop-sweep")
        sweep_stopped.start()
        deadline = time.monotonic() + self.options.graceful_s
        while time.monotonic() < deadline:
            channels = [c for c in self.map.values() if isinstance(c, HTTPChannel)]
            busy = False
            for channel in channels:
                if channel.requests or channel.total_outbufs_len:
                    busy = True
                else:
                    channel.handle_close()  # idle, or still reading a request: done with it
            if not busy:
                break
            wasyncore.loop(timeout=0.1, map=self.map, use_poll=True, count=1)
        self.dispatcher.shutdown(cancel_pending=True, timeout=max(0.0, deadline - time.monotonic()))
        wasyncore.close_all(self.map)
        ctx = self.app.extensions["reconciler"]
        sweep_stopped.join(timeout=ctx.settings.lease_s)
        ctx.close()
        log.info("stopped")

    def _stop_sweep(self) -> None:
        job = self.app.extensions.get("reconciler.sweep_job")
        if job is None:
            self._stop_counts()
            return
        # Calls not started yet are cancelled (their rows are claimed again when the lease
        # ends); calls under way end within the gateway timeouts. Then the job stops.
        job.sweeper.close()
        job.stop()
        self._stop_counts()

    def _stop_counts(self) -> None:
        counts = self.app.extensions.get("reconciler.reliability_job")
        if counts is not None:
            counts.stop()


def serve(settings: Settings, host: str, port: int) -> int:
    """Serve with the in-process sweep; fork workers when RECONCILER_WORKERS > 1."""
    options = ServerOptions.from_env(settings)
    try:
        sockets = bind(options, host, port)
    except OSError as exc:
        raise ConfigError(bind_problem(host, port, exc)) from None
    name = f"{host}:{port}"
    if options.workers == 1:
        return _serve_here(settings, options, sockets, name)
    return _Supervisor(settings, options, sockets, name).run()


def _serve_here(
    settings: Settings, options: ServerOptions, sockets: list[socket.socket], name: str
) -> int:
    from reconciler.entrypoints.commands import build_serving_app

    app = build_serving_app(settings, bind=name)
    return Server(app, options, sockets).run()


class _Supervisor:
    """Fork the serving processes, restart one that dies, pass stop signals on."""

    def __init__(
        self, settings: Settings, options: ServerOptions, sockets: list[socket.socket], name: str
    ) -> None:
        self.settings = settings
        self.options = options
        self.sockets = sockets
        self.name = name
        self.children: set[int] = set()
        self.stopping = False

    def run(self) -> int:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._forward)
        for _ in range(self.options.workers):
            self._spawn()
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
            self.children.discard(pid)
            if not self.stopping:
                log.error("worker died, starting another", extra={"pid": pid, "status": status})
                time.sleep(1)  # a worker that cannot start must not spin the CPU
                self._spawn()
        return 0

    def _spawn(self) -> None:
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                for signum in STOP_SIGNALS:
                    signal.signal(signum, signal.SIG_DFL)
                code = _serve_here(self.settings, self.options, self.sockets, self.name)
            except BaseException:
                log.exception("worker crashed")
            finally:
                os._exit(code)
        self.children.add(pid)

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                self.children.discard(pid)
