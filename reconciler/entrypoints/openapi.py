"""The API described as OpenAPI 3.1 (served at `/openapi.json`), built from the declarations.

Shapes come from the pydantic models in `schemas` (through `models_json_schema`, the same
models that validate and serialise); paths, parameters, answers and security come from each
route's declaration (`routing.Routes`). Written here by hand are only the routes served
without a declaration: gateway webhooks (authenticated by a signature over the raw body,
which no schema can describe) and the operations endpoints.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from reconciler import __version__
from reconciler.config import GATEWAYS
from reconciler.entrypoints import accounts, admin, admin_notifications, api, endpoints
from reconciler.entrypoints.problems import PROBLEM
from reconciler.entrypoints.routing import Answer, Operation, Routes, status_phrase
from reconciler.entrypoints.schemas import Problem, ResourceId

# Every blueprint whose routes are declared with `Routes`; a new one is added here.
DECLARED: tuple[Routes, ...] = (
    api.routes,
    endpoints.routes,
    admin.routes,
    admin_notifications.routes,
    accounts.admin_routes,
    accounts.merchant_routes,
)
SCHEMES = {"bearer": "Merchant API key", "admin": "RECONCILER_ADMIN_TOKEN"}
REF = "#/components/schemas/{model}"
ANY_OBJECT: dict[str, Any] = {"type": "object"}

UNDECLARED = (
    Operation(
        method="POST",
        path="/webhooks/{gateway}",
        operation_id="webhooks.receive",
        summary="Receive a gateway webhook (signed with the gateway's scheme)",
        security=None,
        body=ANY_OBJECT,
        path_parameters=("gateway",),
        answers={200: Answer(ANY_OBJECT, "Accepted (duplicates included)")},
        problems={
            400: "Malformed body or signature header",
            401: "Signature wrong or timestamp outside tolerance",
            404: "Unknown gateway",
            413: "Body too large",
        },
    ),
    Operation(
        method="POST",
        path="/webhooks/{gateway}/{account_id}",
        operation_id="webhooks.receive_for_account",
        summary="Receive a gateway account's webhook (verified with that account's secrets)",
        security=None,
        body=ANY_OBJECT,
        path_parameters=("gateway", "account_id"),
        answers={200: Answer(ANY_OBJECT, "Accepted (duplicates included)")},
        problems={
            400: "Malformed body or signature header",
            401: "Signature wrong (for this account) or timestamp outside tolerance",
            404: "Unknown gateway or account",
            413: "Body too large",
        },
    ),
    Operation(
        method="GET",
        path="/healthz",
        operation_id="ops.healthz",
        summary="Say the process is alive",
        security=None,
        answers={200: Answer(ANY_OBJECT, "Alive")},
        problems={},
    ),
    Operation(
        method="GET",
        path="/readyz",
        operation_id="ops.readyz",
        summary="Say whether the database answers and a sweep finished recently",
        security=None,
        answers={200: Answer(ANY_OBJECT, "Ready"), 503: Answer(ANY_OBJECT, "Not ready")},
        problems={},
    ),
    Operation(
        method="GET",
        path="/metrics",
        operation_id="ops.metrics",
        summary="Expose metrics in the Prometheus text format",
        security=None,
        answers={200: Answer({"type": "string"}, "Prometheus text format", "text/plain")},
        problems={},
    ),
)


def operations(*, admin: bool) -> list[Operation]:
    """List the documented operations; the operator ones only when they are on."""
    declared = [op for routes in DECLARED for op in routes.operations]
    return [op for op in [*declared, *UNDECLARED] if admin or op.security != "admin"]


def spec(gateways: Iterable[str] = GATEWAYS, *, admin: bool = False) -> dict[str, Any]:
    """Return the OpenAPI document (shared: not to be changed); `gateways` take new payments."""
    # Built once per variant: the document is public, and building it costs milliseconds.
    return _spec(tuple(gateways), admin)


@functools.lru_cache(maxsize=16)
def _spec(gateways: tuple[str, ...], admin: bool) -> dict[str, Any]:
    document = describe_operations(operations(admin=admin))
    # The one fact no model knows: which gateways this deployment has credentials for.
    properties = document["components"]["schemas"]["PaymentRequest"]["properties"]
    properties["gateway"]["enum"] = list(gateways)
    return document


def describe_operations(documented: Sequence[Operation]) -> dict[str, Any]:
    """Build an OpenAPI document of these operations and the shapes they use."""
    refs, schemas = _components(documented)
    paths: dict[str, dict[str, Any]] = {}
    for op in documented:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs, schemas)
    for op in documented:
        if op.query is not None:
            schemas.pop(_name(refs, op.query), None)  # described as parameters instead
    schemes = {op.security for op in documented if op.security}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Reconciler",
            "version": __version__,
            "description": "Payment status reconciliation: webhooks first, polling with "
            "exponential backoff for the callbacks that never came.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}] if "bearer" in schemes else [],
        "paths": paths,
        "components": {
            "securitySchemes": {
                name: {"type": "http", "scheme": "bearer", "description": SCHEMES.get(name, name)}
                for name in sorted(schemes)
            },
            "schemas": schemas,
        },
    }


Refs = dict[tuple[Any, JsonSchemaMode], dict[str, Any]]


def _components(documented: Sequence[Operation]) -> tuple[Refs, dict[str, Any]]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(Problem, "serialization"): None}
    for op in documented:
        for model in (op.body, op.query):
            if isinstance(model, type):
                wanted[(model, "validation")] = None
        for answer in op.answers.values():
            if isinstance(answer.shape, type):
                wanted[(answer.shape, "serialization")] = None
    refs, top = models_json_schema(list(wanted), ref_template=REF)
    return dict(refs), dict(top.get("$defs", {}))


def _operation(op: Operation, refs: Refs, schemas: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
    if op.security != "bearer":
        operation["security"] = [{op.security: []}] if op.security else []
    parameters = [_path_parameter(name) for name in op.path_parameters]
    if op.query is not None:
        parameters += _query_parameters(schemas[_name(refs, op.query)])
    if parameters:
        operation["parameters"] = parameters
    if op.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _shape(op.body, refs, "validation")}},
        }
    responses: dict[str, Any] = {}
    for status, answer in op.answers.items():
        response: dict[str, Any] = {"description": answer.description or status_phrase(status)}
        if answer.shape is not None:
            schema = _shape(answer.shape, refs, "serialization")
            response["content"] = {answer.media_type: {"schema": schema}}
        if answer.headers:
            response["headers"] = {h: {"schema": {"type": "string"}} for h in answer.headers}
        responses[str(status)] = response
    problem = {PROBLEM: {"schema": refs[(Problem, "serialization")]}}
    for status, description in sorted(op.problems.items()):
        responses[str(status)] = {"description": description, "content": problem}
    operation["responses"] = responses
    return operation


def _name(refs: Refs, model: type[BaseModel]) -> str:
    ref: str = refs[(model, "validation")]["$ref"]
    return ref.rsplit("/", 1)[1]


def _shape(
    shape: type[BaseModel] | dict[str, Any], refs: Refs, mode: JsonSchemaMode
) -> dict[str, Any]:
    return refs[(shape, mode)] if isinstance(shape, type) else shape


def _path_parameter(name: str) -> dict[str, Any]:
    schema = TypeAdapter(ResourceId).json_schema()
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query_parameters(model_schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(model_schema.get("required", ()))
    parameters = []
    for name, schema in model_schema["properties"].items():
        schema = {k: v for k, v in schema.items() if k not in ("title", "description")}
        parameter = {"name": name, "in": "query", "required": name in required, "schema": schema}
        if "description" in model_schema["properties"][name]:
            parameter["description"] = model_schema["properties"][name]["description"]
        parameters.append(parameter)
    return parameters
