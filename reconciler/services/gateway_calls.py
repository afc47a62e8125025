"""Gateway calls and what their answers mean: the one place adapter errors are mapped.

A call never raises: it returns the gateway's answer or the error as a value. The
mapping turns either into a counter label, the words a merchant may read in
`sync.last_error` (never an internal URL: operators get the full text in the logs) and
the sync event the answer stands for.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from reconciler.adapters.gateways.base import (
    AuthError,
    Cancels,
    CreateRequest,
    Gateway,
    GatewayError,
    GatewayPayment,
    NotFoundError,
    RequestRejected,
    TransientError,
)
from reconciler.domain.sync import CallFailed, Held, NotKnown

log = logging.getLogger(__name__)

Answer = GatewayPayment | GatewayError

_URL = re.compile(r"\b\w+://\S+")


def fetch(gateway: Gateway, gateway_payment_id: str) -> Answer:
    """Ask the gateway about one payment; an answer about another payment is not believed."""
    try:
        answer = gateway.fetch_payment(gateway_payment_id)
    except GatewayError as exc:
        return _failed(gateway, "fetch", exc)
    except Exception as exc:  # a bug in an adapter must not kill the sweep
        log.exception("gateway adapter crashed", extra={"gateway": gateway.name})
        return TransientError(f"adapter error: {type(exc).__name__}")
    if answer.gateway_payment_id != gateway_payment_id:
        return TransientError(
            f"asked for {gateway_payment_id}, "
            f"the gateway answered about {answer.gateway_payment_id} instead"
        )
    return answer


def cancel(gateway: Cancels, gateway_payment_id: str, reason: str) -> Answer:
    """Cancel a payment nobody paid at the gateway; answer its new state or the error."""
    try:
        answer = gateway.cancel_payment(gateway_payment_id, reason)
    except GatewayError as exc:
        return exc
    except Exception as exc:
        log.exception("gateway adapter crashed", extra={"gateway": gateway_payment_id})
        return TransientError(f"adapter error: {type(exc).__name__}")
    if answer.gateway_payment_id != gateway_payment_id:
        return TransientError(f"canceled {gateway_payment_id}, the gateway answered otherwise")
    return answer


def create(gateway: Gateway, request: CreateRequest) -> Answer:
    """Create a payment at the gateway (the idempotency key makes a retry safe)."""
    try:
        return gateway.create_payment(request)
    except GatewayError as exc:
        return _failed(gateway, "create", exc)
    except Exception as exc:
        log.exception("gateway adapter crashed", extra={"gateway": gateway.name})
        return TransientError(f"adapter error: {type(exc).__name__}")


def _failed(gateway: Gateway, call: str, exc: GatewayError) -> GatewayError:
    """Log a call that did not get an answer (at WARNING: an outage must be heard)."""
    if isinstance(exc, TransientError | AuthError):
        log.warning(
            "%s gateway call failed (%s): %s",
            gateway.name,
            call,
            exc,
            extra={"gateway": gateway.name, "call": call, "reason": str(exc)},
        )
    return exc


def label(answer: Answer) -> str:
    """Name an answer for counters."""
    if isinstance(answer, GatewayPayment):
        return "ok"
    if isinstance(answer, TransientError):
        return "transient"
    if isinstance(answer, NotFoundError):
        return "not_found"
    if isinstance(answer, AuthError):
        return "auth_error"
    if isinstance(answer, RequestRejected):
        return "rejected"
    return "error"


def describe(error: GatewayError) -> str:
    """Say what went wrong in words a merchant may read: no addresses, no internals."""
    response = error.response
    if isinstance(error, AuthError):
        return "credentials rejected by the gateway"
    if isinstance(error, NotFoundError):
        return "the gateway does not know this payment"
    if response is not None:
        return f"HTTP {response.status_code} from the gateway"
    message = str(error)
    for prefix, meaning in (
        ("timeout", "gateway timeout"),
        ("connection error", "gateway unreachable"),
        ("non-JSON", "non-JSON answer from the gateway"),
        ("unexpected JSON", "unexpected answer from the gateway"),
    ):
        if message.startswith(prefix):
            return meaning
    return _URL.sub("the gateway", message)[:300]


def failure_event(
    answer: GatewayError, *, hold_until: datetime, prefix: str = ""
) -> CallFailed | NotKnown | Held:
    """Turn a failed call into the sync event it stands for.

    Rejected credentials are our configuration's fault, not the payment's: the row is
    held until `hold_until` and no attempt is counted against it.
    """
    words = prefix + describe(answer)
    if isinstance(answer, NotFoundError):
        return NotKnown(words)
    if isinstance(answer, AuthError):
        return Held(until=hold_until, error=words)
    retry_after = answer.retry_after if isinstance(answer, TransientError) else None
    return CallFailed(words, retry_after)
