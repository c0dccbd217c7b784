"""With the database out of reach (a restart, a lost network hop) a real server answers 503
with Retry-After and the request id, as JSON under /api/ and as a short page elsewhere; a
500 would say "bug" and clients would not retry."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django.test import RequestFactory

from api.main import api
from config.middleware import server_error
from tests.integration.live.servers import start_server

pytestmark = pytest.mark.e2e

NOBODY = "postgres://postgres@127.0.0.1:9/nothing"  # the discard port: refused at once


@pytest.fixture(scope="module")
def server_without_database(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("away") / "uvicorn.log", database=NOBODY)
    yield server
    server.stop()


def test_the_api_answers_503_json_with_the_request_id(server_without_database):
    response = server_without_database.get("/api/jobs/?limit=5", host="acme.localhost")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "unavailable" and "try again" in body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["Retry-After"] == "5"
    # The 503's log line names the request too (django.request logs it after the middleware).
    assert (
        f"[{body['request_id']}] Service Unavailable: /api/jobs/" in server_without_database.log()
    )


def test_pages_answer_a_503_page_and_health_says_so(server_without_database):
    page = server_without_database.get("/admin/", host="acme.localhost")
    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
    assert page.headers["X-Request-ID"] in page.text and "try again" in page.text
    health = server_without_database.get("/healthz", host="localhost")
    assert health.status_code == 503
    assert "Traceback" not in server_without_database.log()


def test_a_database_error_inside_a_view_is_a_503_too(db):
    request = RequestFactory().get("/api/jobs/")
    request.request_id = "req-12345678"
    response = api.on_exception(request, OperationalError("server closed the connection"))
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert b'"request_id": "req-12345678"' in response.content
    try:
        raise OperationalError("terminating connection due to administrator command")
    except OperationalError:
        page = server_error(RequestFactory().get("/admin/"))  # handler500, within the except
    assert page.status_code == 503
    try:
        raise ValueError("a bug")
    except ValueError:
        assert server_error(RequestFactory().get("/admin/")).status_code == 500
