"""Declare an API route once: Flask routing, request validation, the answer, its OpenAPI entry.

Why a small layer of our own over pydantic rather than spectree or flask-openapi3: both
want their own error answers (422 with their own body) and their own way of reading the
request, and flask-openapi3 its own Blueprint class. Here the blueprints stay plain Flask,
a 400 is our RFC 9457 problem listing every invalid field, the raw body goes through our
size-limited reader and bounded JSON decoder first, and the OpenAPI document is built from
the same declarations (`reconciler.entrypoints.openapi`) with pydantic's `model_json_schema`.

A view declared with `Routes` receives its path parameters (already checked to be ids),
`body=` and `query=` (validated models), and returns a model, `(model, status)` or
`(model, status, headers)` — `None` for a 204. Declaring a route:

    routes = Routes(bp, security="bearer")

    @routes.post("/payments", body=PaymentRequest, ok={201: Payment, 200: Payment})
    def create_payment(body: PaymentRequest) -> tuple[Payment, int]:
        "Register a payment."
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from flask import Blueprint, Response, current_app, request
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from werkzeug.exceptions import NotFound

from reconciler.entrypoints.bodies import read_body
from reconciler.entrypoints.jsonbody import BodyError, decode
from reconciler.entrypoints.problems import InvalidRequest
from reconciler.entrypoints.schemas import FieldError, ResourceId

View = Callable[..., Any]
Schema = type[BaseModel] | dict[str, Any] | None

_UNREADABLE = object()  # a body that could not be decoded (its error is already listed)
_RESOURCE_ID: TypeAdapter[str] = TypeAdapter(ResourceId)
_FLASK_PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
MESSAGES = {
    "missing": "is required",
    "string_type": "must be a string",
    "string_pattern_mismatch": "must be printable text: not blank, no control or "
    "invisible characters",
    "string_unicode": "must be valid Unicode (no lone surrogates)",
    "int_type": "must be an integer",
    "model_type": "the body must be a JSON object",
}


@dataclass(frozen=True)
class Answer:
    """One documented answer: its shape (a model, a JSON Schema, or none) and headers."""

    shape: Schema = None
    description: str = ""
    media_type: str = "application/json"
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    """Everything the OpenAPI document says about one method on one path."""

    method: str
    path: str  # as OpenAPI writes it: /v1/payments/{payment_id}
    operation_id: str
    summary: str
    security: str | None  # a security scheme's name, or None for a public operation
    answers: Mapping[int, Answer]
    problems: Mapping[int, str]
    body: Schema = None
    query: type[BaseModel] | None = None
    path_parameters: tuple[str, ...] = ()


@dataclass
class Routes:
    """The declared routes of one blueprint, all behind one security scheme."""

    blueprint: Blueprint
    security: str | None
    not_found: str = "No such resource"  # the 404 of a route with path parameters
    operations: list[Operation] = field(default_factory=list)

    def get(self, rule: str, **declaration: Any) -> Callable[[View], View]:
        return self.route("GET", rule, **declaration)

    def post(self, rule: str, **declaration: Any) -> Callable[[View], View]:
        return self.route("POST", rule, **declaration)

    def patch(self, rule: str, **declaration: Any) -> Callable[[View], View]:
        return self.route("PATCH", rule, **declaration)

    def delete(self, rule: str, **declaration: Any) -> Callable[[View], View]:
        return self.route("DELETE", rule, **declaration)

    def route(
        self,
        method: str,
        rule: str,
        *,
        ok: Mapping[int, type[BaseModel] | Answer | None],
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        problems: Mapping[int, str] | None = None,
    ) -> Callable[[View], View]:
        """Route `rule` to the view, validating its input and answering with its model."""
        answers = {
            status: shape if isinstance(shape, Answer) else Answer(shape)
            for status, shape in ok.items()
        }
        parameters = tuple(_FLASK_PARAMETER.findall(rule))
        documented = {400: "Invalid request", **(problems or {})}
        if self.security:
            documented.setdefault(401, "Missing or unknown credentials")
        if parameters:
            documented.setdefault(404, self.not_found)
        if body is not None:
            documented.setdefault(413, "Body too large")

        def decorate(view: View) -> View:
            @functools.wraps(view)
            def endpoint(**path: str) -> Response:
                for name, value in path.items():
                    _check_id(name, value)
                inputs: dict[str, Any] = {}
                errors: list[FieldError] = []
                if query is not None:
                    inputs["query"] = _validate(query, request.args.to_dict(), errors, "query")
                if body is not None:
                    inputs["body"] = _validate(body, _decoded_body(errors), errors, "body")
                if errors:
                    raise InvalidRequest(errors)
                return _answer(view(**path, **inputs), answers)

            self.blueprint.add_url_rule(rule, view_func=endpoint, methods=[method])
            self.operations.append(
                Operation(
                    method=method,
                    path=_FLASK_PARAMETER.sub(r"{\1}", (self.blueprint.url_prefix or "") + rule),
                    operation_id=f"{self.blueprint.name}.{view.__name__}",
                    summary=(view.__doc__ or view.__name__).strip().splitlines()[0].rstrip("."),
                    security=self.security,
                    answers=answers,
                    problems=documented,
                    body=body,
                    query=query,
                    path_parameters=parameters,
                )
            )
            return endpoint

        return decorate


def _check_id(name: str, value: str) -> None:
    # Refused before any query: NUL is a DataError on PostgreSQL, a lone surrogate cannot
    # be encoded, and no id the service hands out looks like either.
    try:
        _RESOURCE_ID.validate_python(value)
    except ValidationError:
        raise NotFound(f"no {name.removesuffix('_id')} with this id") from None


def _decoded_body(errors: list[FieldError]) -> Any:
    raw = read_body(int(current_app.config["MAX_CONTENT_LENGTH"]))
    try:
        return decode(raw)
    except BodyError as exc:
        errors.append(FieldError(field=None, detail=str(exc)))
        return _UNREADABLE


def _validate(
    model: type[BaseModel], data: Any, errors: list[FieldError], where: str
) -> BaseModel | None:
    if data is _UNREADABLE:
        return None
    if isinstance(data, dict):
        # pydantic refuses a whole object over one key that is not Unicode (a lone
        # surrogate); no field is named so, so list it as unknown and check the rest.
        unreadable = [key for key in data if not _is_unicode(key)]
        errors.extend(_field_error(_unknown(key), where) for key in unreadable)
        data = {key: value for key, value in data.items() if key not in unreadable}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors.extend(_field_error(error, where) for error in exc.errors())
        return None


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unknown(name: str) -> ErrorDetails:
    return {"type": "extra_forbidden", "loc": (name,), "msg": "", "input": None}


def _field_error(error: ErrorDetails, where: str) -> FieldError:
    name = ".".join(str(part) for part in error["loc"])
    # A field name is client text: keep it short and encodable (it may hold a lone surrogate).
    name = name[:100].encode("utf-8", "backslashreplace").decode()
    if error["type"] == "extra_forbidden":
        detail = "unknown query parameter" if where == "query" else "unknown field"
    else:
        detail = MESSAGES.get(error["type"], error["msg"])
    return FieldError(field=name or None, detail=detail)


def _answer(answer: Any, answers: Mapping[int, Answer]) -> Response:
    status, headers = next(iter(answers)), dict[str, str]()
    if isinstance(answer, tuple):
        answer, status, *rest = answer
        headers = rest[0] if rest else {}
    declared = answers.get(status)
    if declared is None:
        raise RuntimeError(f"answer {status} is not declared for {request.endpoint}")
    if answer is None:
        return Response(status=status, headers=headers)
    if isinstance(declared.shape, type) and not isinstance(answer, declared.shape):
        raise RuntimeError(f"{request.endpoint} answered {status} with {type(answer).__name__}")
    return Response(
        answer.model_dump_json(), status=status, headers=headers, mimetype="application/json"
    )


def status_phrase(status: int) -> str:
    """Name an answer whose declaration gave no description."""
    return HTTPStatus(status).phrase
