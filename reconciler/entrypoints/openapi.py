"""The API described as OpenAPI 3.1 (served at `/openapi.json`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from reconciler import __version__
from reconciler.config import GATEWAYS
from reconciler.domain.currencies import ISO_4217
from reconciler.domain.status import Outcome, Source, Status, SyncState
from reconciler.services.payments import MAX_AMOUNT, MAX_LIST_LIMIT, TEXT_PATTERN

TIMESTAMP = {"type": "string", "format": "date-time"}
NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
PROBLEM = {"$ref": "#/components/schemas/Problem"}
TEXT = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": TEXT_PATTERN}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": PROBLEM}},
    }


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


PAYMENT_ID = {
    "name": "payment_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 64},
}

ERRORS = {
    "400": _problem("Invalid request"),
    "401": _problem("Missing or unknown API key"),
    "404": _problem("No such payment for this merchant"),
}


def spec(gateways: Iterable[str] = GATEWAYS, *, admin: bool = False) -> dict[str, Any]:
    """Build the OpenAPI document; `gateways` are the ones new payments may name.

    The operator endpoints are described only when they are on (an admin token is set).
    """
    document = _document(gateways)
    if admin:
        document["paths"].update(_admin_paths())
        document["components"]["securitySchemes"]["admin"] = {"type": "http", "scheme": "bearer"}
    return document


def _admin_paths() -> dict[str, Any]:
    payment_ref = {"$ref": "#/components/schemas/Payment"}
    note = {"type": "string", "minLength": 1, "maxLength": 1000}
    security: list[dict[str, list[str]]] = [{"admin": []}]
    errors = {
        "400": _problem("Invalid request"),
        "401": _problem("Missing or wrong admin token"),
        "404": _problem("No such payment"),
    }

    def post(summary: str, body: dict[str, Any] | None, ok: dict[str, Any]) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "summary": summary,
            "security": security,
            "parameters": [PAYMENT_ID],
            "responses": {**ok, **errors},
        }
        if body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
        return {"post": operation}

    return {
        "/admin/payments": {
            "get": {
                "summary": "List every merchant's payments, optionally in one sync state",
                "security": security,
                "parameters": [
                    {
                        "name": "sync_state",
                        "in": "query",
                        "schema": {"type": "string", "enum": [s.value for s in SyncState]},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _json({"type": "object"}, "One page of payments"),
                    "400": errors["400"],
                    "401": errors["401"],
                },
            }
        },
        "/admin/payments/{payment_id}": {
            "get": {
                "summary": "Show any merchant's payment",
                "security": security,
                "parameters": [PAYMENT_ID],
                "responses": {"200": _json(payment_ref, "The payment"), **errors},
            }
        },
        "/admin/payments/{payment_id}/refresh": post(
            "Poll the payment as soon as possible", None, {"202": _json(payment_ref, "Scheduled")}
        ),
        "/admin/payments/{payment_id}/report": post(
            "Apply an operator's status report through the status rules",
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["status", "note"],
                "properties": {
                    "status": {"type": "string", "enum": [s.value for s in Status]},
                    "gateway_status": {"type": "string", "maxLength": 64},
                    "note": note,
                },
            },
            {"200": _json({"type": "object"}, "The outcome and the payment")},
        ),
        "/admin/payments/{payment_id}/resolve": post(
            "Clear the payment's review flag",
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["note"],
                "properties": {"note": note},
            },
            {"200": _json(payment_ref, "The payment")},
        ),
    }


def _document(gateways: Iterable[str]) -> dict[str, Any]:
    payment_ref = {"$ref": "#/components/schemas/Payment"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Reconciler",
            "version": __version__,
            "description": "Payment status reconciliation: webhooks first, polling with "
            "exponential backoff for the callbacks that never came.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/v1/payments": {
                "post": {
                    "operationId": "registerPayment",
                    "summary": "Register a payment, or create it at the gateway",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PaymentRequest"}
                            }
                        },
                    },
                    "responses": {
                        "201": _json(
                            payment_ref,
                            "Registered",
                            headers={"Location": {"schema": {"type": "string"}}},
                        ),
                        "200": _json(payment_ref, "The same request again: the same payment"),
                        "409": _problem("The reference was used with a different body"),
                        "413": _problem("Body too large"),
                        "400": ERRORS["400"],
                        "401": ERRORS["401"],
                    },
                },
                "get": {
                    "operationId": "listPayments",
                    "summary": "List payments, newest first",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "description": "Only payments with this status; empty means any",
                            "schema": {"type": "string", "enum": ["", *(s.value for s in Status)]},
                        },
                        {
                            "name": "gateway",
                            "in": "query",
                            "description": "Only payments at this gateway; empty means any",
                            "schema": {"type": "string", "enum": ["", *GATEWAYS]},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_LIST_LIMIT,
                                "default": 20,
                            },
                        },
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["data", "next_cursor"],
                                "properties": {
                                    "data": {"type": "array", "items": payment_ref},
                                    "next_cursor": {"type": ["string", "null"]},
                                },
                            },
                            "One page of payments",
                        ),
                        "400": ERRORS["400"],
                        "401": ERRORS["401"],
                    },
                },
            },
            "/v1/payments/{payment_id}": {
                "get": {
                    "operationId": "getPayment",
                    "summary": "Show one payment",
                    "parameters": [PAYMENT_ID],
                    "responses": {"200": _json(payment_ref, "The payment"), **ERRORS},
                }
            },
            "/v1/payments/{payment_id}/events": {
                "get": {
                    "operationId": "getPaymentEvents",
                    "summary": "Show the payment's timeline",
                    "parameters": [PAYMENT_ID],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["data"],
                                "properties": {
                                    "data": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Event"},
                                    }
                                },
                            },
                            "Every report, applied or not, oldest first",
                        ),
                        **ERRORS,
                    },
                }
            },
            "/v1/payments/{payment_id}/refresh": {
                "post": {
                    "operationId": "refreshPayment",
                    "summary": "Poll the payment as soon as possible (revives gave_up)",
                    "parameters": [PAYMENT_ID],
                    "responses": {"202": _json(payment_ref, "Scheduled"), **ERRORS},
                }
            },
            "/webhooks/{gateway}": {
                "post": {
                    "operationId": "receiveWebhook",
                    "summary": "Receive a gateway webhook (signed with the gateway's scheme)",
                    "security": [],
                    "parameters": [
                        {
                            "name": "gateway",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {
                        "200": _json({"type": "object"}, "Accepted (duplicates included)"),
                        "400": _problem("Malformed body or signature header"),
                        "401": _problem("Signature wrong or timestamp outside tolerance"),
                        "404": _problem("Unknown gateway"),
                        "413": _problem("Body too large"),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "Alive")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "security": [],
                    "responses": {
                        "200": _json({"type": "object"}, "Ready"),
                        "503": _json({"type": "object"}, "Not ready"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "PaymentRequest": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["merchant_reference", "gateway", "amount", "currency"],
                    "properties": {
                        "merchant_reference": TEXT,
                        "gateway": {"type": "string", "enum": list(gateways)},
                        "amount": {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT},
                        "currency": {"type": "string", "enum": sorted(ISO_4217)},
                        "gateway_payment_id": TEXT,
                    },
                },
                "Payment": {
                    "type": "object",
                    "required": [
                        "id",
                        "merchant_reference",
                        "gateway",
                        "gateway_payment_id",
                        "amount",
                        "currency",
                        "status",
                        "gateway_status",
                        "status_source",
                        "created_at",
                        "updated_at",
                        "settled_at",
                        "sync",
                    ],
                    "properties": {
                        "id": {"type": "string"},
                        "merchant_reference": {"type": "string"},
                        "gateway": {"type": "string", "enum": list(GATEWAYS)},
                        "gateway_payment_id": {"type": ["string", "null"]},
                        "amount": {"type": "integer"},
                        "currency": {"type": "string"},
                        "status": {"type": "string", "enum": [s.value for s in Status]},
                        "gateway_status": {"type": ["string", "null"]},
                        "status_source": {
                            "type": ["string", "null"],
                            "enum": [*(s.value for s in Source), None],
                        },
                        "created_at": TIMESTAMP,
                        "updated_at": TIMESTAMP,
                        "settled_at": NULLABLE_TIMESTAMP,
                        "review_reason": {"type": ["string", "null"]},
                        "sync": {
                            "type": "object",
                            "required": [
                                "state",
                                "poll_attempts",
                                "next_poll_at",
                                "last_polled_at",
                                "last_error",
                            ],
                            "properties": {
                                "state": {"type": "string", "enum": [s.value for s in SyncState]},
                                "poll_attempts": {"type": "integer", "minimum": 0},
                                "next_poll_at": NULLABLE_TIMESTAMP,
                                "last_polled_at": NULLABLE_TIMESTAMP,
                                "last_error": {"type": ["string", "null"]},
                                "give_up_at": TIMESTAMP,
                            },
                        },
                    },
                },
                "Event": {
                    "type": "object",
                    "required": ["id", "recorded_at", "source", "outcome", "to_status"],
                    "properties": {
                        "id": {"type": "integer"},
                        "recorded_at": TIMESTAMP,
                        "source": {"type": "string", "enum": [s.value for s in Source]},
                        "outcome": {"type": "string", "enum": [o.value for o in Outcome]},
                        "from_status": {"type": "string"},
                        "to_status": {"type": "string"},
                        "gateway_status": {"type": ["string", "null"]},
                        "gateway_event_id": {"type": ["string", "null"]},
                        "occurred_at": NULLABLE_TIMESTAMP,
                        "detail": {"type": "object"},
                    },
                },
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                    },
                },
            },
        },
    }
