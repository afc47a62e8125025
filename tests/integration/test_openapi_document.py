"""The OpenAPI document comes from the same declarations and models that serve the API."""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import Ge
from flask import Blueprint, Flask
from flask.testing import FlaskClient
from pydantic import Field

from reconciler.entrypoints.openapi import describe_operations, spec
from reconciler.entrypoints.routing import Routes
from reconciler.entrypoints.schemas import Shape, Text
from reconciler.services.payments import MAX_LIST_LIMIT


def parameter(operation: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in operation["parameters"] if p["name"] == name)
    return found


def test_the_list_limit_in_the_document_is_the_one_the_code_enforces() -> None:
    document = spec(admin=True)
    for path in (
        "/v1/payments",
        "/v1/webhook_endpoints/{endpoint_id}/deliveries",
        "/admin/payments",
    ):
        limit = parameter(document["paths"][path]["get"], "limit")
        assert limit["schema"]["maximum"] == MAX_LIST_LIMIT


def test_every_route_the_app_serves_is_in_the_document(app: Flask) -> None:
    documented = {
        (method.upper(), path)
        for path, item in spec(admin=True)["paths"].items()
        for method in item
    }
    served = {
        (method, rule.rule.replace("<", "{").replace(">", "}"))
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
        and rule.endpoint not in {"static", "ops.openapi"}
        # The operator's page is HTML for a browser, not part of the JSON API.
        and not rule.rule.startswith("/admin/ui")
    }
    assert served == documented


def test_the_document_names_only_the_gateways_that_take_new_payments(
    client: FlaskClient,
) -> None:
    schemas = client.get("/openapi.json").json["components"]["schemas"]
    assert schemas["PaymentRequest"]["properties"]["gateway"]["enum"] == ["simulator"]


def test_problems_are_documented_with_instance_and_field_errors() -> None:
    schemas = spec()["components"]["schemas"]
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "detail", "instance"}
    assert schemas["FieldError"]["required"] == ["field", "detail"]


def test_a_patch_documents_its_fields_as_optional_but_never_null() -> None:
    document = spec()
    patch = document["paths"]["/v1/webhook_endpoints/{endpoint_id}"]["patch"]
    assert patch["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EndpointUpdate"
    }
    update = document["components"]["schemas"]["EndpointUpdate"]
    assert update["minProperties"] == 1 and "required" not in update
    for name in ("url", "events", "status"):
        assert (
            "anyOf" not in update["properties"][name]
            and "default" not in update["properties"][name]
        )
    assert {"type": "null"} in update["properties"]["description"]["anyOf"]


def test_the_endpoint_routes_are_behind_the_merchant_key_with_their_answers() -> None:
    paths = spec()["paths"]
    create = paths["/v1/webhook_endpoints"]["post"]
    assert "security" not in create  # the document's default: the merchant's bearer key
    assert set(create["responses"]) == {"201", "400", "401", "413"}
    assert "Location" in create["responses"]["201"]["headers"]
    retry = paths["/v1/webhook_endpoints/{endpoint_id}/deliveries/{delivery_id}/retry"]["post"]
    assert [p["name"] for p in retry["parameters"]] == ["endpoint_id", "delivery_id"]
    assert set(retry["responses"]) == {"202", "400", "401", "404", "409"}
    assert (
        "content" not in paths["/v1/webhook_endpoints/{endpoint_id}"]["delete"]["responses"]["204"]
    )


class Widget(Shape):
    name: Text
    size: Annotated[int, Ge(1)] = Field(description="In widgets")


def test_a_new_route_is_one_declaration_that_validates_answers_and_documents(
    app: Flask,
) -> None:
    bp = Blueprint("widgets", __name__, url_prefix="/v1")
    routes = Routes(bp, security=None)

    @routes.post("/widgets/<widget_id>", body=Widget, ok={201: Widget})
    def make_widget(widget_id: str, body: Widget) -> tuple[Widget, int]:
        """Make a widget."""
        return body, 201

    @routes.delete("/widgets/<widget_id>", ok={204: None})
    def scrap_widget(widget_id: str) -> None:
        """Scrap a widget."""

    app.register_blueprint(bp)
    client = app.test_client()
    made = client.post("/v1/widgets/w_1", json={"name": "cog", "size": 2})
    assert (made.status_code, made.json) == (201, {"name": "cog", "size": 2})
    refused = client.post("/v1/widgets/w_1", json={"name": "", "size": 0, "colour": "red"})
    assert refused.status_code == 400
    assert [e["field"] for e in refused.json["errors"]] == ["name", "size", "colour"]
    assert client.post("/v1/widgets/w%00", json={}).status_code == 404
    scrapped = client.delete("/v1/widgets/w_1")
    assert (scrapped.status_code, scrapped.data) == (204, b"")

    document = describe_operations(routes.operations)
    operation = document["paths"]["/v1/widgets/{widget_id}"]["post"]
    assert operation["summary"] == "Make a widget"
    assert operation["security"] == []
    assert parameter(operation, "widget_id")["in"] == "path"
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Widget"
    }
    assert set(operation["responses"]) == {"201", "400", "404", "413"}
    scrap = document["paths"]["/v1/widgets/{widget_id}"]["delete"]
    assert "content" not in scrap["responses"]["204"]
    widget = document["components"]["schemas"]["Widget"]
    assert widget["properties"]["size"]["minimum"] == 1
    assert widget["additionalProperties"] is False
