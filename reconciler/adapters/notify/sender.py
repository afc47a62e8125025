"""POST one signed notification to a merchant's endpoint and report what happened."""

from __future__ import annotations

import http.client
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import requests
import urllib3.exceptions
from standardwebhooks.webhooks import Webhook

from reconciler.adapters.notify import deadline
from reconciler.adapters.notify.deadline import Attempt, Watchdog
from reconciler.adapters.notify.destinations import (
    DestinationGuard,
    DestinationRefused,
    Resolver,
    pinned_session,
    system_resolver,
)
from reconciler.adapters.notify.resolving import LookupTimedOut
from reconciler.domain.delivery import DeliveryOutcome

log = logging.getLogger(__name__)

USER_AGENT = "reconciler-notify/1"
MAX_RESPONSE_BYTES = 4096  # the answer is not used; read a little so the socket can be reused
TIMEOUT = "timeout"


def signature_headers(
    event_id: str, body: bytes, secrets: Sequence[str], *, at: datetime
) -> dict[str, str]:
    """Standard Webhooks headers; during a rotation one `v1,…` entry per secret."""
    text = body.decode()
    signatures = [
        Webhook(secret).sign(msg_id=event_id, timestamp=at, data=text) for secret in secrets
    ]
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


class Sender:
    """Deliver one event to one URL: signed, under a deadline, no redirects, no retries.

    The whole attempt (lookup, connect, TLS, request, status, headers and the first
    `MAX_RESPONSE_BYTES` of the body) ends by `timeout_s` wall-clock: the watchdog shuts
    its socket down at the deadline whatever the receiver drips (`deadline.py`). The
    session must reach only checked addresses (`destinations.pinned_session`); the guard
    is consulted again on every new connection, so a DNS answer that changed since
    registration is refused here too. `send` never raises: whatever a library raises
    becomes a failed attempt with a few words (`transport_error`).
    """

    def __init__(
        self,
        session: requests.Session,
        *,
        timeout_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        watchdog: Watchdog | None = None,
    ) -> None:
        self.session = session
        self.timeout_s = timeout_s
        self.clock = clock
        self.watchdog = watchdog or deadline.watchdog()

    def send(
        self, url: str, *, event_id: str, body: bytes, secrets: Sequence[str]
    ) -> DeliveryOutcome:
        """Make one attempt and describe its outcome; never raises."""
        started = time.monotonic()
        try:
            headers = signature_headers(event_id, body, secrets, at=self.clock())
            with self.watchdog.attempt(self.timeout_s) as attempt:
                try:
                    return self._post(url, body, headers, attempt, started)
                except Exception as exc:
                    late = attempt.expired or time.monotonic() - started >= self.timeout_s
                    error = TIMEOUT if late else transport_error(exc)
                    return DeliveryOutcome(error=error, duration_s=time.monotonic() - started)
        except Exception as exc:  # not the endpoint's doing: say so, and keep going
            log.warning("delivery attempt failed in the sender", extra={"error": repr(exc)})
            return DeliveryOutcome(
                error="the attempt could not be made", duration_s=time.monotonic() - started
            )

    def _post(
        self, url: str, body: bytes, headers: dict[str, str], attempt: Attempt, started: float
    ) -> DeliveryOutcome:
        timeout = max(0.01, attempt.remaining())
        response = self.session.post(
            url,
            data=body,
            headers=headers,
            timeout=(timeout, timeout),
            allow_redirects=False,
            stream=True,
        )
        try:
            # Only a prefix is read, undecoded: the answer is not used, and an endpoint
            # must not make us download (or decompress) much.
            response.raw.read(MAX_RESPONSE_BYTES, decode_content=False)
        except Exception:  # the status is the answer; a cut-off body changes nothing
            pass
        finally:
            response.close()
        duration = time.monotonic() - started
        if attempt.expired or duration > self.timeout_s:
            return DeliveryOutcome(error=TIMEOUT, duration_s=duration)
        return DeliveryOutcome(
            status_code=response.status_code,
            retry_after=response.headers.get("Retry-After"),
            location=response.headers.get("Location"),
            duration_s=duration,
        )


def new_sender(
    *,
    timeout_s: float,
    allow_private: bool,
    pool_maxsize: int = 10,
    resolver: Resolver | None = None,
) -> Sender:
    """Build a sender whose connections go only where the destination rules allow."""
    guard = DestinationGuard(allow_private=allow_private, resolver=resolver or system_resolver)
    return Sender(pinned_session(guard, pool_maxsize=pool_maxsize), timeout_s=timeout_s)


def transport_error(exc: BaseException) -> str:
    """Name a transport failure in a few words, whatever library raised it.

    The innermost cause is named first (a refused connection inside urllib3's wrappers
    is "connection refused", not the wrapper's "connection failed").
    """
    for link in reversed(_chain(exc)):
        for types, words in _TRANSPORT_ERRORS:
            if isinstance(link, types):
                return words if words else str(link)
    return "request failed"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (causes, contexts, urllib3's `reason`)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 20:
        link = todo.pop(0)
        if link is None or any(link is s for s in seen):
            continue
        seen.append(link)
        reason = getattr(link, "reason", None)
        todo += [link.__cause__, link.__context__]
        todo += [reason] if isinstance(reason, BaseException) else []
        todo += [a for a in link.args if isinstance(a, BaseException)]
    return seen


# First match along the chain wins; a refusal's own words (None) say what was refused.
_TRANSPORT_ERRORS: tuple[
    tuple[type[BaseException] | tuple[type[BaseException], ...], str | None], ...
] = (
    (DestinationRefused, None),
    (LookupTimedOut, "timeout resolving the host name"),
    ((TimeoutError, requests.Timeout, urllib3.exceptions.TimeoutError), TIMEOUT),
    (ConnectionRefusedError, "connection refused"),
    ((http.client.RemoteDisconnected,), "connection closed without an answer"),
    ((ConnectionResetError, BrokenPipeError, ConnectionAbortedError), "connection reset"),
    (ssl.SSLCertVerificationError, "TLS certificate not trusted"),
    (ssl.SSLError, "TLS handshake failed"),
    (
        (http.client.HTTPException, urllib3.exceptions.ProtocolError),
        "the answer is not valid HTTP",
    ),
    ((OSError, urllib3.exceptions.NewConnectionError), "connection failed"),
)
