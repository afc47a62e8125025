"""`reconciler listen`: a local receiver that verifies and prints each delivery, for development.

It answers 200, or fails on purpose (`--fail-rate`, `--status`, `--delay`) to show the
retries, or misbehaves as a hostile receiver would (`--drip`: the body one byte at a time;
`--hang`: nothing after the headers) to rehearse the service's attempt deadline. The
options are one dataclass, so any command-line library can fill it.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import IO, Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

MAX_BODY_BYTES = 1024 * 1024
DRIP_BYTES = 1000  # the length a dripping answer declares, sent one byte at a time


@dataclass(frozen=True)
class ListenOptions:
    """What `reconciler listen` is told on its command line."""

    secret: str
    host: str = "127.0.0.1"
    port: int = 8200
    fail_rate: float = 0.0  # the share of deliveries answered with `status`, on purpose
    status: int = 503
    retry_after: int | None = None  # sent with a failure, when given
    delay: float = 0.0  # seconds to wait before answering (past the timeout: a slow endpoint)
    drip: float = 0.0  # seconds between the answer body's bytes (0: all at once)
    hang: float = 0.0  # seconds to stall after sending the answer's headers
    seed: int | None = None

    def __post_init__(self) -> None:
        try:
            Webhook(self.secret)
        except Exception:  # the library raises several kinds for a bad secret
            raise ValueError("--secret must be the endpoint's whsec_… secret") from None
        if not self.secret.startswith("whsec_"):
            raise ValueError("--secret must be the endpoint's whsec_… secret")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError("--fail-rate must be between 0 and 1")
        if not 100 <= self.status <= 599:
            raise ValueError("--status must be an HTTP status code")
        if min(self.delay, self.drip, self.hang) < 0:
            raise ValueError("--delay, --drip and --hang must not be negative")


class Listener:
    """A WSGI app that verifies each delivery, prints one line about it and answers."""

    def __init__(
        self,
        options: ListenOptions,
        *,
        out: IO[str] | None = None,
        rand: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = options
        self.webhook = Webhook(options.secret)
        self.out = out or sys.stdout
        self.rand = rand or random.Random(options.seed).random
        self.sleep = sleep
        self.lock = threading.Lock()
        self.attempts: dict[str, int] = {}  # webhook-id → attempts seen
        self.sequences: dict[str, int] = {}  # payment id → highest sequence seen

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        response = self.handle(Request(environ))
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        """Verify one request, print it, and answer as the options say."""
        if request.method != "POST":
            return Response("POST deliveries here\n", status=405, headers={"Allow": "POST"})
        body = request.stream.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            self.print("REJECTED body over 1 MiB")
            return Response("too large\n", status=413)
        try:
            event = self.webhook.verify(body, dict(request.headers))
        except (WebhookVerificationError, ValueError, UnicodeDecodeError) as exc:
            self.print(f"REJECTED signature does not verify: {exc}")
            return Response("signature does not verify\n", status=400)
        webhook_id = request.headers.get("webhook-id", "")
        with self.lock:
            attempt = self.attempts[webhook_id] = self.attempts.get(webhook_id, 0) + 1
            line, stale = self.describe(event)
        fail = self.rand() < self.options.fail_rate
        status = self.options.status if fail else 200
        if self.options.delay:
            self.sleep(self.options.delay)
        note = " (older than one already seen)" if stale else ""
        note += self.misbehaviour()
        self.print(f"{line} webhook-id={webhook_id} attempt={attempt}{note} -> {status}")
        headers = {}
        if fail and self.options.retry_after is not None:
            headers["Retry-After"] = str(self.options.retry_after)
        text = b"failed on purpose\n" if fail else b"ok\n"
        if not (self.options.drip or self.options.hang):
            return Response(text, status=status, headers=headers)
        length = DRIP_BYTES if self.options.drip else len(text)
        headers["Content-Length"] = str(length)
        return Response(self.slow_body(text), status=status, headers=headers)

    def misbehaviour(self) -> str:
        """Say how the answer will misbehave, for the printed line."""
        notes = []
        if self.options.hang:
            notes.append(f"hanging {self.options.hang:g} s after the headers")
        if self.options.drip:
            notes.append(f"dripping the body a byte every {self.options.drip:g} s")
        return f" ({', '.join(notes)})" if notes else ""

    def slow_body(self, text: bytes) -> Iterator[bytes]:
        """Send the headers, then stall or drip the body (the sender cuts it off)."""
        yield b""  # the server sends the status and headers with the first write
        if self.options.hang:
            self.sleep(self.options.hang)
        if not self.options.drip:
            yield text
            return
        for _ in range(DRIP_BYTES):
            self.sleep(self.options.drip)
            yield b"."

    def describe(self, event: Any) -> tuple[str, bool]:
        """Summarise an event; say whether a higher sequence of its payment was seen before."""
        if not isinstance(event, dict):
            return "event (not a JSON object)", False
        data = event["data"] if isinstance(event.get("data"), dict) else {}
        sync = data["sync"] if isinstance(data.get("sync"), dict) else {}
        payment, sequence = str(data.get("id")), event.get("sequence")
        stale = False
        if isinstance(sequence, int):
            highest = self.sequences.get(payment, 0)
            stale = sequence < highest
            self.sequences[payment] = max(sequence, highest)
        line = (
            f"{event.get('type')} payment={payment} status={data.get('status')} "
            f"sync={sync.get('state')} sequence={sequence}"
        )
        return line, stale

    def print(self, text: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        with self.lock:
            print(f"{stamp} {text}", file=self.out, flush=True)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def listen(options: ListenOptions) -> int:
    """Serve the listener until SIGINT or SIGTERM."""
    server = make_server(
        options.host, options.port, Listener(options), threaded=True, request_handler=_QuietHandler
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so it must not run on its thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    url = f"http://{options.host}:{server.port}/"
    print(
        f'listening on {url} (register it: POST /v1/webhook_endpoints {{"url": "{url}"}})',
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
