"""A wall-clock deadline for one delivery attempt, enforced on its sockets.

Socket timeouts bound each read, not the whole answer: a receiver that drips one byte
just inside the timeout keeps an attempt open for as long as it likes. Here every socket
an attempt uses is registered with one `Watchdog` thread, which shuts the socket down
(both directions) when the attempt's deadline passes; whatever the thread making the
attempt is blocked in (connect, TLS, sending, reading headers or body) then returns at
once with an error, and the attempt ends.

The watchdog shuts down a duplicate descriptor of the socket (`shutdown(2)` acts on the
connection, not the descriptor), taken before any TLS wrapping for a new connection, so
it never touches the TLS object another thread is using, and the handshake is covered
too. The attempt owns its duplicates and closes them when it ends.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator


class Attempt:
    """One attempt's deadline (on the monotonic clock) and the sockets it uses."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def remaining(self) -> float:
        """Seconds left before the deadline (never negative)."""
        return max(0.0, self.deadline - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        """Cut the connection of `sock` off at the deadline (at once if it has passed).

        `sock` is the attempt's own duplicate descriptor (see `duplicate`): it is closed
        when the attempt finishes.
        """
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        """Cut every connection of the attempt off: the deadline has passed."""
        with self._lock:  # under the lock: `finish` cannot close a descriptor meanwhile
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def finish(self) -> None:
        """Stop watching (the attempt is over): close its duplicate descriptors."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
            for sock in sockets:
                sock.close()


def duplicate(sock: socket.socket) -> socket.socket:
    """A plain socket on a duplicate of `sock`'s descriptor (TLS sockets too)."""
    return socket.fromfd(sock.fileno(), sock.family, sock.type)


def _shut(sock: socket.socket) -> None:
    # socket.socket's own method, so an SSLSocket's TLS state is not touched.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_current = threading.local()


def current() -> Attempt | None:
    """The attempt this thread is making, if any."""
    attempt: Attempt | None = getattr(_current, "attempt", None)
    return attempt


class Watchdog:
    """One thread that expires attempts at their deadlines."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Attempt]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def attempt(self, timeout_s: float) -> Iterator[Attempt]:
        """Run an attempt on this thread that ends at the latest `timeout_s` from now."""
        attempt = Attempt(time.monotonic() + timeout_s)
        with self._wake:
            heapq.heappush(self._heap, (attempt.deadline, next(self._order), attempt))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="notify-deadlines", daemon=True
                )
                self._thread.start()
            self._wake.notify()
        _current.attempt = attempt
        try:
            yield attempt
        finally:
            _current.attempt = None
            attempt.finish()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap:
                    self._wake.wait()
                deadline, _, attempt = self._heap[0]
                wait_s = deadline - time.monotonic()
                if wait_s > 0:
                    self._wake.wait(wait_s)
                    continue
                heapq.heappop(self._heap)
            attempt.expire()  # a finished attempt has no sockets left: harmless


_WATCHDOG = Watchdog()


def watchdog() -> Watchdog:
    """The process's watchdog (its thread starts with the first attempt)."""
    return _WATCHDOG
