import json

import pytest
from django.test import Client

from api.services import token_create


class ApiClient:
    """A Django test client on a tenant host, sending a Bearer token and JSON bodies."""

    def __init__(self, host: str, token: str | None = None):
        self.client = Client(HTTP_HOST=host)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, method: str, path: str, body=None, **headers):
        kwargs = {"headers": self.headers, **headers}
        if body is not None:
            kwargs["data"] = json.dumps(body)
            kwargs["content_type"] = "application/json"
        return getattr(self.client, method)(path, **kwargs)

    def get(self, path, **h):
        return self.call("get", path, **h)

    def post(self, path, body=None, **h):
        return self.call("post", path, body if body is not None else {}, **h)

    def put(self, path, body=None, **h):
        return self.call("put", path, body, **h)

    def delete(self, path, **h):
        return self.call("delete", path, **h)


@pytest.fixture
def api_a(tenant_a):
    _token, raw = token_create(name="test writer")
    return ApiClient("alpha.localhost", raw)


@pytest.fixture
def reader_a(tenant_a):
    _token, raw = token_create(name="test reader", read_only=True)
    return ApiClient("alpha.localhost", raw)


def assert_error(response, status: int, code: str):
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert body["error"] == code, body
    assert body["message"]
    assert body["request_id"] == response["X-Request-ID"]
    return body
