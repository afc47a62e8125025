"""POST one signed notification to a merchant's endpoint and report what happened."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import requests
from standardwebhooks.webhooks import Webhook

from reconciler.adapters.notify.destinations import (
    DestinationGuard,
    DestinationRefused,
    pinned_session,
)
from reconciler.domain.delivery import DeliveryOutcome

USER_AGENT = "reconciler-notify/1"
MAX_RESPONSE_BYTES = 4096  # the answer is not used; read a little so the socket can be reused


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
    """Deliver one event to one URL: signed, timed out, no redirects followed, no retries.

    The session must reach only checked addresses (`destinations.pinned_session`); the
    guard is consulted again on every new connection, so a DNS answer that changed since
    registration is refused here too.
    """

    def __init__(
        self,
        session: requests.Session,
        *,
        timeout_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.session = session
        self.timeout_s = timeout_s
        self.clock = clock

    def send(
        self, url: str, *, event_id: str, body: bytes, secrets: Sequence[str]
    ) -> DeliveryOutcome:
        """Make one attempt and describe its outcome; never raises for the endpoint's faults."""
        headers = signature_headers(event_id, body, secrets, at=self.clock())
        started = time.monotonic()

        def failed(error: str) -> DeliveryOutcome:
            return DeliveryOutcome(error=error, duration_s=time.monotonic() - started)

        try:
            response = self.session.post(
                url,
                data=body,
                headers=headers,
                timeout=(self.timeout_s, self.timeout_s),
                allow_redirects=False,
                stream=True,
            )
        except DestinationRefused as exc:
            return failed(f"destination refused: {exc}")
        except requests.Timeout:
            return failed(f"timed out after {self.timeout_s:g} s")
        except requests.ConnectionError as exc:
            return failed(f"connection failed: {_root(exc)}")
        except requests.RequestException as exc:
            return failed(f"request failed: {exc}")
        try:
            # A body is read only up to a cap: an endpoint cannot make us download a lot.
            response.raw.read(MAX_RESPONSE_BYTES)
        except (requests.RequestException, OSError, ValueError):
            pass
        finally:
            response.close()
        duration = time.monotonic() - started
        if duration > self.timeout_s:
            # requests times each read, not the whole answer: a slow drip is a timeout too.
            return DeliveryOutcome(
                error=f"answered after the {self.timeout_s:g} s timeout", duration_s=duration
            )
        return DeliveryOutcome(
            status_code=response.status_code,
            retry_after=response.headers.get("Retry-After"),
            location=response.headers.get("Location"),
            duration_s=duration,
        )


def new_sender(*, timeout_s: float, allow_private: bool, pool_maxsize: int = 10) -> Sender:
    """Build a sender whose connections go only where the destination rules allow."""
    guard = DestinationGuard(allow_private=allow_private)
    return Sender(pinned_session(guard, pool_maxsize=pool_maxsize), timeout_s=timeout_s)


def _root(exc: BaseException) -> str:
    """The innermost cause's message: what actually went wrong under the wrappers."""
    while (inner := exc.__cause__ or exc.__context__) is not None:
        exc = inner
    return str(exc)[:300]
