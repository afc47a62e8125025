"""Errors the use cases raise; the HTTP layer maps each to a problem response."""


class ServiceError(Exception):
    """Base class: `status` is the HTTP code the edge should answer with."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ValidationFailed(ServiceError):
    status = 400
    title = "Invalid request"


class NotFound(ServiceError):
    status = 404
    title = "Not found"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"


class GatewayUnavailable(ServiceError):
    status = 400
    title = "Gateway not configured"
