"""Schemathesis over the generated OpenAPI schema, against a real ASGI server and database.

Every operation gets bounded generated requests (valid and invalid) with a writer token of
tenant alpha: no response may be a 5xx, and every response must match the schema it
declares (status, content type, body).
"""

from __future__ import annotations

import json
import os

import httpx
import pytest
import schemathesis
from django_tenants.utils import tenant_context
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.conftest import TEST_TENANTS, _ensure_tenant, reset_dispatch_state, truncate_tenant_data
from tests.factories import ProductFactory
from tests.integration.live.servers import start_server

# ``django_db``: the server and its data come from a module fixture; the mark makes
# pytest-django set up the test database when this module runs alone.
pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

MAX_EXAMPLES = 6


@pytest.fixture(scope="module")
def api_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """A server with a high rate limit (generated requests come fast) and a writer token."""
    from api.services import token_create

    os.environ["API_RATE_LIMIT"] = "100000/m"
    try:
        server = start_server(tmp_path_factory.mktemp("api-schema") / "uvicorn.log")
    finally:
        del os.environ["API_RATE_LIMIT"]
    with django_db_blocker.unblock():
        alpha = _ensure_tenant("alpha")
        with tenant_context(alpha):
            _token, raw = token_create(name="schemathesis")
            ProductFactory.create_batch(3)
    yield server, raw
    server.stop()
    with django_db_blocker.unblock():
        schemas = [schema for _name, schema, _domain in TEST_TENANTS.values()]
        for schema in schemas:
            truncate_tenant_data(schema)
        reset_dispatch_state(schemas)


def _openapi() -> dict:
    from api.main import api

    return api.get_openapi_schema(path_prefix="/api/")


# Built at collection from the same code the server runs (the first test checks the server
# serves exactly this document).
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(_openapi(), default=str)))


def test_the_server_serves_this_schema(api_server):
    server, raw = api_server
    response = httpx.get(
        f"http://127.0.0.1:{server.port}/api/openapi.json",
        headers={"Host": f"alpha.localhost:{server.port}", "Authorization": f"Bearer {raw}"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(_openapi(), default=str))


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors_and_responses_match_the_schema(case, api_server):
    server, raw = api_server
    headers = {"Host": f"alpha.localhost:{server.port}", "Authorization": f"Bearer {raw}"}
    response = case.call(base_url=f"http://127.0.0.1:{server.port}", headers=headers, timeout=30)
    case.validate_response(
        response,
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
        headers=headers,
    )
    assert response.headers.get("x-request-id"), response.headers
