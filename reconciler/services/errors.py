"""Errors the use cases raise, named by what went wrong; the HTTP layer maps them to codes."""


class ServiceError(Exception):
    """A use case refused: `detail` says why, in words fit for the caller."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ValidationFailed(ServiceError):
    """The request names something that cannot be (a bad cursor, a state it is not in)."""


class NotFound(ServiceError):
    """What the request names does not exist for this caller."""


class Conflict(ServiceError):
    """The request contradicts what is already there."""


class GatewayUnavailable(ServiceError):
    """The gateway is not configured on this service."""


class SignatureRejected(ServiceError):
    """A webhook's signature does not match, or its timestamp is outside the tolerance."""


class WebhookUnreadable(ServiceError):
    """A webhook's body or signature header cannot be read."""


class SecretsKeyMissing(ServiceError):
    """A secret would have to be stored, and no RECONCILER_SECRETS_KEY can seal it."""
