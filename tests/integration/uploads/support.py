"""Helpers for upload tests: a client sending raw parts with their checksums, CSV builders."""

from __future__ import annotations

import hashlib
import json

from django.test import Client

from api.services import token_create


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class UploadClient:
    """A test client on a tenant host with a Bearer token (in the current tenant's schema)."""

    def __init__(self, host: str, *, read_only: bool = False, token: str | None = None):
        if token is None:
            _row, token = token_create(name="uploads test", read_only=read_only)
        self.token = token
        self.client = Client(HTTP_HOST=host)
        self.headers = {"Authorization": f"Bearer {token}"}

    def json(self, method: str, path: str, body=None, **headers):
        kwargs: dict = {"headers": {**self.headers, **headers}}
        if body is not None:
            kwargs["data"] = json.dumps(body)
            kwargs["content_type"] = "application/json"
        elif method in ("post", "put"):
            kwargs["data"] = b""  # no body at all (the test client would send an empty form)
            kwargs["content_type"] = "application/json"
        return getattr(self.client, method)(path, **kwargs)

    def create(self, data: bytes, *, filename="products.csv", part_size=1024, **extra):
        body = {"filename": filename, "size": len(data), "sha256": sha(data), **extra}
        if part_size is not None:
            body["part_size"] = part_size
        return self.json("post", "/api/uploads", body)

    def put(self, upload_id: str, n: int, data: bytes, *, checksum: str | None = None):
        headers = {**self.headers}
        if checksum is not None or data is not None:
            headers["X-Part-SHA256"] = checksum if checksum is not None else sha(data)
        return self.client.put(
            f"/api/uploads/{upload_id}/parts/{n}",
            data=data,
            content_type="application/octet-stream",
            headers=headers,
        )

    def send_all(self, data: bytes, *, filename="products.csv", part_size=1024, **complete):
        """Create, send every part, complete; returns the completed upload's JSON."""
        created = self.create(data, filename=filename, part_size=part_size)
        assert created.status_code == 201, created.content
        upload = created.json()
        size = upload["part_size"]
        for n in range(1, upload["parts"] + 1):
            response = self.put(upload["upload_id"], n, data[(n - 1) * size : n * size])
            assert response.status_code == 201, response.content
        done = self.json("post", f"/api/uploads/{upload['upload_id']}/complete", complete or {})
        assert done.status_code == 200, done.content
        return done.json()


def parts_of(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def products_csv(count: int, *, prefix: str = "IMP", start: int = 1, bad_every: int = 0) -> bytes:
    lines = ["sku,title,price,quantity,condition,brand,images"]
    for i in range(start, start + count):
        price = "-1" if bad_every and i % bad_every == 0 else f"{10 + i % 50}.90"
        lines.append(
            f"{prefix}-{i:06d},Product {i} with a long enough title,{price},{1 + i % 5},good,"
            f"Brand {i % 7},https://img.example.test/{prefix}/{i}.jpg"
        )
    return ("\n".join(lines) + "\n").encode()


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert body["error"] == code, body
    assert body["message"]
    assert body["request_id"] and body["request_id"] == response["X-Request-ID"]
    return body
