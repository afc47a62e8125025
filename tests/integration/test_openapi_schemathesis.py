"""The served OpenAPI document against the app: schemathesis generates requests from the spec.

Every operation in `/openapi.json` — webhooks (unsigned) and the operator endpoints included —
must answer with a documented status code, a documented content type and a body that matches
the schema, and never with a 5xx. One SQLite database and one merchant serve the whole module;
a couple of payments, two webhook endpoints and deliveries to them are made first so that
generated path parameters sometimes hit real ids.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, BaseSchema, Case, GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from support.app import MerchantAuth, make_settings
from support.clock import FakeClock
from support.outbox import record_payment_event
from support.simulator import Simulator

from reconciler.adapters import repository
from reconciler.bootstrap import Context, bootstrap
from reconciler.entrypoints.app import create_app
from reconciler.entrypoints.openapi import spec
from reconciler.entrypoints.schemas import payment_resource
from reconciler.services.merchants import create_merchant
from reconciler.services.sweep import Sweeper

MAX_EXAMPLES = 50
ADMIN_TOKEN = "schemathesis-admin-token-long-enough"  # test-only
# Nothing listens here, and no sweep runs after the set-up: no delivery is attempted.
ENDPOINT_URL = "http://127.0.0.1:9/hooks"


class Tally:
    """Count the requests schemathesis made, per operation, for the summary line."""

    def __init__(self) -> None:
        self.per_operation: dict[str, int] = {}
        self.statuses: dict[int, int] = {}

    def add(self, label: str, status: int) -> None:
        self.per_operation[label] = self.per_operation.get(label, 0) + 1
        self.statuses[status] = self.statuses.get(status, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.per_operation.values())


TALLY = Tally()


@pytest.fixture(scope="module")
def api_ctx(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, simulator: Simulator
) -> Iterator[Context]:
    target = tmp_path_factory.mktemp("schemathesis") / "reconciler.db"
    shutil.copy(sqlite_template, target)
    context = bootstrap(
        make_settings(
            f"sqlite:///{target}", simulator.url, admin_token=ADMIN_TOKEN, notify_allow_private=1
        ),
        clock=FakeClock(),
        rand=random.Random(1).random,
    )
    yield context
    context.close()


@pytest.fixture(scope="module")
def api_merchant(api_ctx: Context) -> MerchantAuth:
    record, key = create_merchant(api_ctx, "acme")
    return MerchantAuth(record.id, key)


@pytest.fixture(scope="module")
def api_schema(
    api_ctx: Context, api_merchant: MerchantAuth, request: pytest.FixtureRequest
) -> Iterator[BaseSchema]:
    app = create_app(ctx=api_ctx)
    client = app.test_client()
    known_ids = []
    for body in (
        # Tracks an existing gateway payment …
        {"gateway_payment_id": "sim_pay_schemathesis_1", "merchant_reference": "order-1"},
        # … and creates one at the (real, loopback) simulator.
        {"merchant_reference": "order-2"},
    ):
        payload = {"gateway": "simulator", "amount": 49900, "currency": "INR", **body}
        response = client.post("/v1/payments", json=payload, headers=api_merchant.headers)
        assert response.status_code == 201, response.json
        known_ids.append(response.json["id"])

    # A sweep has run, so /readyz is honestly ready (its 503 is covered by the ops tests).
    sweeper = Sweeper(api_ctx)
    sweeper.sweep_once()
    sweeper.close()
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    KNOWN_IDS["payment_id"] = known_ids
    page = client.get("/v1/payments?limit=1", headers=api_merchant.headers).json
    assert page["next_cursor"], page
    KNOWN_CURSORS["/v1/payments"] = KNOWN_CURSORS["/admin/payments"] = [page["next_cursor"]]

    # Two endpoints: one the generated DELETEs may remove, one kept for the operations after.
    kept, doomed = (
        client.post(
            "/v1/webhook_endpoints", json={"url": ENDPOINT_URL}, headers=api_merchant.headers
        ).json["id"]
        for _ in range(2)
    )
    for payment_id, event_type in zip(
        known_ids, ("payment.succeeded", "payment.failed"), strict=True
    ):
        with api_ctx.sessions.begin() as session:
            payment = repository.payment_for_update(session, payment_id)
            assert payment is not None
            record_payment_event(
                session,
                payment,
                event_type,
                now=api_ctx.clock(),
                resource=payment_resource(payment),
                policy=api_ctx.settings.notify.policy,
            )
    deliveries = f"/v1/webhook_endpoints/{kept}/deliveries"
    page = client.get(f"{deliveries}?limit=1", headers=api_merchant.headers).json
    assert page["next_cursor"], page
    KNOWN_CURSORS["/v1/webhook_endpoints/{endpoint_id}/deliveries"] = [page["next_cursor"]]
    operator = client.get(
        "/admin/deliveries?limit=1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ).json
    assert operator["next_cursor"], operator
    KNOWN_CURSORS["/admin/deliveries"] = [operator["next_cursor"]]
    listed = client.get(deliveries, headers=api_merchant.headers).json["data"]
    KNOWN_IDS["endpoint_id"] = [kept]
    KNOWN_IDS["delivery_id"] = [d["id"] for d in listed]
    DOOMED_IDS[:] = [doomed]
    yield schema
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    summary = (
        f"schemathesis: {TALLY.total} requests over {len(TALLY.per_operation)} operations; "
        f"statuses {dict(sorted(TALLY.statuses.items()))}"
    )
    if reporter is not None:
        reporter.write_line(summary)
        for label, count in sorted(TALLY.per_operation.items()):
            reporter.write_line(f"  {count:4d}  {label}")


# Parametrized from the spec itself (a pure function), so every operation is its own test.
# (schemathesis's lazy `from_fixture` loader does not run under pytest 9.2: it sets
# `node._nodeid`, which pytest no longer has; so each test drives hypothesis directly.)
OPERATIONS = [
    (method.upper(), path) for path, item in spec(admin=True)["paths"].items() for method in item
]
KNOWN_IDS: dict[str, list[str]] = {}  # path parameter -> ids that exist
DOOMED_IDS: list[str] = []  # the endpoint a DELETE may remove
KNOWN_CURSORS: dict[str, list[str]] = {}  # path -> cursors the API handed out


def with_real_cursor(case: Case) -> Case:
    # A cursor is opaque: only one the API handed out is valid, and a made-up string that
    # merely matches `type: string` is rightly a 400. Valid cases get a real one (or none);
    # invalid cases keep their made-up cursors and must still be refused.
    if case.query and "cursor" in case.query:
        known = KNOWN_CURSORS[case.operation.path]
        case.query["cursor"] = known[len(str(case.query["cursor"])) % len(known)]
    return case


def real_path_parameters(operation: APIOperation) -> list[dict[str, str]]:
    """Every combination of existing ids for the operation's path parameters."""
    combinations: list[dict[str, str]] = [{}]
    for parameter in operation.path_parameters:
        ids = (
            DOOMED_IDS
            if operation.method.upper() == "DELETE"
            else KNOWN_IDS.get(parameter.name, [])
        )
        combinations = [{**c, parameter.name: value} for c in combinations for value in ids]
    return combinations


def extras_reach_the_wire(case: Case, declared: set[str]) -> bool:
    # Schemathesis negates a query with undeclared parameters, some valued `[]` or `{}`,
    # which serialize to nothing: the server then sees a valid query and rightly answers 200.
    extras = [value for name, value in (case.query or {}).items() if name not in declared]
    return not extras or any(
        isinstance(value, str | int | float) or (isinstance(value, list) and value)
        for value in extras
    )


def cases(operation: APIOperation) -> st.SearchStrategy[Case]:
    """Valid and invalid requests; a path with ids also gets real ones."""
    positive = operation.as_strategy(GenerationMode.POSITIVE)
    if any(p.name == "cursor" for p in operation.query):
        positive = positive.map(with_real_cursor)
    declared = {p.name for p in operation.query}
    negative = operation.as_strategy(GenerationMode.NEGATIVE).filter(
        lambda case: extras_reach_the_wire(case, declared)
    )
    strategies = [positive, negative]
    if operation.path_parameters:
        # Random ids only ever meet a 404; these reach the 200/202/204 responses too.
        strategies += [
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters=ids).map(
                with_real_cursor
            )
            for ids in real_path_parameters(operation)
        ]
    return st.one_of(strategies)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_conforms_to_the_served_spec(
    method: str, path: str, api_schema: BaseSchema, api_merchant: MerchantAuth
) -> None:
    operation = api_schema[path][method]
    # An explicit header beats a generated one, so negative cases still probe auth through
    # schemathesis's own `ignored_auth` check (it replays the case without credentials).
    headers = api_merchant.headers if path.startswith("/v1/") else None
    if path.startswith("/admin/"):
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    excluded = []
    if path.startswith("/webhooks/"):
        # "Schema-valid data is accepted" cannot hold here: the signature is an HMAC over the
        # raw body, which OpenAPI cannot describe, so every generated delivery is refused.
        # What must hold instead is asserted below: 400/401/404/413, never a 5xx.
        excluded.append(positive_data_acceptance)
    if path.endswith("/resolve"):
        # A valid body for a payment that is not flagged for review is rightly refused (400).
        excluded.append(positive_data_acceptance)
    if path in ("/v1/webhook_endpoints", "/v1/webhook_endpoints/{endpoint_id}"):
        # A generated URL is rarely one that resolves, and the destination guard refuses it.
        excluded.append(positive_data_acceptance)
    if path.endswith("/recover"):
        # A schema-valid `since` is usually in the future, which is rightly refused (400).
        excluded.append(positive_data_acceptance)

    @given(case=cases(operation))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Case) -> None:
        response = case.call_and_validate(headers=headers, excluded_checks=excluded)
        TALLY.add(operation.label, response.status_code)
        # Also schemathesis's `not_a_server_error` check; explicit because it is the point.
        assert response.status_code < 500, response.text
        if path.startswith("/webhooks/"):
            assert response.status_code in {400, 401, 404, 413}, response.text

    run()


def test_schemathesis_really_ran() -> None:
    # Runs after the parametrized test in file order: a run that generated nothing proves nothing.
    assert TALLY.total >= 100, TALLY.per_operation
    assert len(TALLY.per_operation) == len(OPERATIONS), TALLY.per_operation
