"""Uploads through the real ASGI server, imports run by real workers, publishing on the sandbox.

The server and the workers are subprocesses: they find the files under the same
``UPLOADS_ROOT`` (set in the environment for this module) and take 1 KiB parts.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from django_tenants.utils import tenant_context

from api.services import token_create
from marketplaces.models import MarketplaceAccount, Product
from orchestration.models import Batch, JobRun, MarketplaceJob
from tests.conftest import _ensure_tenant
from tests.e2e.conftest import wait_for
from tests.integration.live.servers import start_server
from tests.integration.marketplaces.support import Sandbox, SandboxProcess
from tests.integration.uploads.support import parts_of, products_csv, sha
from uploads import storage
from uploads.models import Upload

pytestmark = pytest.mark.e2e

UPLOAD_ENV = {"UPLOADS_MIN_PART_SIZE": "1024", "UPLOADS_DEFAULT_PART_SIZE": "1024"}


@pytest.fixture(scope="module")
def uploads_env(tmp_path_factory):
    """Environment read by this process, the server and the workers (uploads.conf)."""
    values = {**UPLOAD_ENV, "UPLOADS_ROOT": str(tmp_path_factory.mktemp("uploads"))}
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield Path(values["UPLOADS_ROOT"])
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def server(uploads_env, django_db_setup, tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("uploads-server") / "uvicorn.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sandbox_process(tmp_path_factory):
    process = SandboxProcess.start(tmp_path_factory.mktemp("sandbox") / "sandbox.log")
    yield process
    process.stop()


class Api:
    """httpx to the server on 127.0.0.1 with the tenant's Host header and a token."""

    def __init__(self, server, host: str, token: str):
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{server.port}",
            headers={"Host": f"{host}:{server.port}", "Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def create(self, data: bytes, filename: str = "products.csv") -> dict:
        body = {"filename": filename, "size": len(data), "sha256": sha(data), "part_size": 1024}
        response = self.http.post("/api/uploads", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def put(self, upload_id: str, n: int, part: bytes) -> httpx.Response:
        return self.http.put(
            f"/api/uploads/{upload_id}/parts/{n}",
            content=part,
            headers={"X-Part-SHA256": sha(part), "Content-Type": "application/octet-stream"},
        )


@pytest.fixture
def make_api(server):
    """An ``Api`` for a test tenant with a new token; closed after the test."""
    made: list[Api] = []

    def make(key: str) -> Api:
        with tenant_context(_ensure_tenant(key)):
            _row, raw = token_create(name=f"e2e {key}")
        made.append(Api(server, f"{key}.localhost", raw))
        return made[-1]

    yield make
    for api in made:
        api.http.close()


@pytest.fixture
def sandbox(sandbox_process):
    with httpx.Client(base_url=sandbox_process.url, timeout=5) as client:
        box = Sandbox(sandbox_process.url, client)
        box.reset()
        yield box


def test_upload_then_import_then_publish_batch_on_the_sandbox(
    make_api, sandbox, tx_tenant_a, start_cluster
):
    for marketplace in ("ebay", "etsy"):
        MarketplaceAccount.objects.create(
            marketplace=marketplace, shop_id=f"alpha-{marketplace}", base_url=sandbox.url,
            api_token=f"tok-{uuid.uuid4().hex}",
        )  # fmt: skip
    api = make_api("alpha")
    data = products_csv(12, prefix="FLOW", bad_every=6)  # 2 rows rejected
    upload = api.create(data)
    assert upload["parts"] == len(parts_of(data, 1024)) > 1
    for n, part in enumerate(parts_of(data, 1024), start=1):
        assert api.put(upload["upload_id"], n, part).status_code == 201
    done = api.http.post(
        f"/api/uploads/{upload['upload_id']}/complete", json={"marketplaces": ["ebay", "etsy"]}
    )
    assert done.status_code == 200, done.text
    job_id = done.json()["import_job_id"]
    assert MarketplaceJob.objects.get(pk=job_id).status == "queued"  # no worker yet

    start_cluster(workers=2, DRAIN_SECONDS=5)
    seen: list[str] = []

    def status() -> str:
        value = MarketplaceJob.objects.get(pk=job_id).status
        if not seen or seen[-1] != value:
            seen.append(value)
        return value

    wait_for(lambda: status() in ("completed", "failed"), timeout=120, what="the import job")
    job = MarketplaceJob.objects.get(pk=job_id)
    assert job.status == "completed", job.error_message
    run = JobRun.objects.get(job_id=job_id)  # it ran (running) once, in a worker
    assert run.status == "completed" and run.started_at <= run.finished_at
    assert seen[0] in ("queued", "running")
    assert Product.objects.filter(sku__startswith="FLOW-").count() == 10

    report = api.http.get(f"/api/uploads/{upload['upload_id']}/report").json()
    assert (report["rows_read"], report["valid"], report["rejected"]) == (12, 10, 2)
    assert [e["line"] for e in report["errors"]] == [7, 13]  # FLOW-000006 and -000012
    batch = Batch.objects.get(pk=report["publish_batch_id"])
    assert batch.total_jobs == report["publish_jobs"] == 20
    wait_for(
        lambda: Batch.objects.get(pk=batch.pk).status in ("completed", "partial", "failed"),
        timeout=180, what="the publish batch",
    )  # fmt: skip
    batch.refresh_from_db()
    assert batch.status == "completed", list(
        batch.jobs.exclude(status="completed").values_list("marketplace", "status", "error_message")
    )
    effects = Counter((e["marketplace"], e["operation"], e.get("sku")) for e in sandbox.ledger())
    assert effects and set(effects.values()) == {1}  # every side effect exactly once
    published = {sku for (_m, _op, sku) in effects if sku}
    valid = {f"FLOW-{i:06d}" for i in range(1, 13) if i % 6}
    assert published == valid, published ^ valid


def _send_interrupted(server, api: Api, upload_id: str, n: int, part: bytes) -> None:
    """Headers and half the body, then the connection drops (a client losing its network)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = (
        f"PUT /api/uploads/{upload_id}/parts/{n} HTTP/1.1\r\n"
        f"Host: alpha.localhost:{server.port}\r\n"
        f"Authorization: {api.http.headers['Authorization']}\r\n"
        f"X-Part-SHA256: {sha(part)}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {len(part)}\r\n\r\n"
    )
    sock.sendall(head.encode() + part[: len(part) // 2])
    sock.close()


def test_resume_after_an_interrupted_upload(server, make_api, tx_tenant_a):
    api = make_api("alpha")
    data = os.urandom(5 * 1024 + 100)
    parts = parts_of(data, 1024)
    upload = api.create(data, filename="big.jsonl")
    uid = upload["upload_id"]
    for n in (1, 2, 4, 5):
        assert api.put(uid, n, parts[n - 1]).status_code == 201
    _send_interrupted(server, api, uid, 3, parts[2])
    state = wait_for(
        lambda: (r := api.http.get(f"/api/uploads/{uid}").json())["parts_received"] == [1, 2, 4, 5]
        and r, timeout=30, what="the upload state",
    )  # fmt: skip
    assert state["parts_missing_count"] == 2  # 3 (dropped) and 6 (not sent yet)
    assert api.http.post(f"/api/uploads/{uid}/complete").status_code == 409
    for n in (3, 6):  # what GET said was missing
        assert api.put(uid, n, parts[n - 1]).status_code == 201
    done = api.http.post(f"/api/uploads/{uid}/complete")
    assert done.status_code == 200, done.text
    with tenant_context(_ensure_tenant("alpha")):
        assert (storage.upload_dir(uid) / storage.DATA).read_bytes() == data


def test_two_tenants_uploading_at_once_stay_apart(make_api, tx_tenant_a):
    apis = {key: make_api(key) for key in ("alpha", "beta")}
    files = {key: os.urandom(24 * 1024 + i) for i, key in enumerate(apis)}
    uploads = {key: apis[key].create(files[key]) for key in apis}
    failures: list = []

    def send(key: str) -> None:
        try:
            for n, part in enumerate(parts_of(files[key], 1024), start=1):
                response = apis[key].put(uploads[key]["upload_id"], n, part)
                if response.status_code != 201:
                    failures.append((key, n, response.status_code, response.text))
        except Exception as exc:  # reported below
            failures.append((key, exc))

    threads = [threading.Thread(target=send, args=(key,)) for key in apis]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    for key, other in (("alpha", "beta"), ("beta", "alpha")):
        uid = uploads[key]["upload_id"]
        assert apis[key].http.post(f"/api/uploads/{uid}/complete").status_code == 200
        assert apis[other].http.get(f"/api/uploads/{uid}").status_code == 404
        assert apis[other].put(uid, 1, files[key][:1024]).status_code == 404
        with tenant_context(_ensure_tenant(key)):
            assert (storage.upload_dir(uid) / storage.DATA).read_bytes() == files[key]
            assert Upload.objects.get(pk=uid).state == "completed"
