"""The endpoint shapes give the OpenAPI generator a JSON schema each, timestamps as date-time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from reconciler.entrypoints import endpoint_schemas
from reconciler.entrypoints.endpoint_schemas import Delivery

MODELS = [
    value
    for value in vars(endpoint_schemas).values()
    if isinstance(value, type) and value.__module__ == endpoint_schemas.__name__
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_shape_has_a_json_schema_in_both_directions(model: type[BaseModel]) -> None:
    for mode in ("validation", "serialization"):
        schema = model.model_json_schema(mode=mode)  # type: ignore[arg-type]
        assert schema["type"] == "object" and schema["properties"]


def test_timestamps_are_sent_as_the_payments_api_sends_them() -> None:
    at = datetime(2026, 11, 28, 10, 0, 3, 123456, tzinfo=UTC)
    delivery = Delivery(
        id="del_1",
        event_id="evt_1",
        event_type="payment.succeeded",  # type: ignore[arg-type]
        payment_id="pay_1",
        status="delivered",
        created_at=at,
        attempts=1,
        next_attempt_at=None,
        last_attempt_at=at,
        last_response_status=200,
        last_error=None,
        delivered_at=at,
    )
    body = delivery.model_dump(mode="json")
    assert body["created_at"] == "2026-11-28T10:00:03.123Z"
    assert body["event_type"] == "payment.succeeded"
    props = Delivery.model_json_schema(mode="serialization")["properties"]
    assert (props["created_at"]["type"], props["created_at"]["format"]) == ("string", "date-time")
