"""The chunked upload API in-process: parts, resume, integrity, bounds, tenants, request ids."""

from __future__ import annotations

import importlib
import os

import pytest
from django.test import override_settings
from django_tenants.utils import tenant_context

from tests.integration.uploads.support import (
    UploadClient,
    assert_error,
    parts_of,
    sha,
)
from uploads import storage
from uploads.models import Upload

DATA = bytes(range(256)) * 10  # 2,560 bytes: parts of 1,024, 1,024 and 512


@pytest.fixture
def client_a(tenant_a, uploads_root):
    return UploadClient("alpha.localhost")


def _data_file(upload_id: str) -> bytes:
    return (storage.upload_dir(upload_id) / storage.DATA).read_bytes()


def test_parts_resume_progress_and_complete(client_a):
    created = client_a.create(DATA, filename="catalogue.csv")
    assert created.status_code == 201
    upload = created.json()
    assert (upload["parts"], upload["part_size"], upload["state"]) == (3, 1024, "receiving")
    one, two, three = parts_of(DATA, 1024)
    uid = upload["upload_id"]

    assert client_a.put(uid, 3, three).status_code == 201  # any order
    assert client_a.put(uid, 1, one).status_code == 201
    progress = client_a.json("get", f"/api/uploads/{uid}").json()
    assert progress["parts_received"] == [1, 3]
    assert progress["bytes_received"] == 1024 + 512
    assert progress["progress_percent"] == (100 * 1536) // len(DATA)

    missing = assert_error(client_a.json("post", f"/api/uploads/{uid}/complete"), 409, "conflict")
    assert missing["details"]["missing"] == [2]

    assert client_a.put(uid, 2, two).status_code == 201  # the resumed part
    done = client_a.json("post", f"/api/uploads/{uid}/complete")
    assert done.status_code == 200, done.content
    assert (done.json()["state"], done.json()["progress_percent"]) == ("completed", 100)
    assert done.json()["format"] == "csv"
    assert _data_file(uid) == DATA
    again = client_a.json("post", f"/api/uploads/{uid}/complete")  # idempotent
    assert again.status_code == 200
    assert_error(client_a.put(uid, 2, two), 409, "conflict")  # complete: no more parts


def test_same_bytes_again_is_ok_other_bytes_conflict(client_a):
    uid = client_a.create(DATA).json()["upload_id"]
    one = DATA[:1024]
    assert client_a.put(uid, 1, one).status_code == 201
    again = client_a.put(uid, 1, one)
    assert again.status_code == 200
    assert again.json()["stored"] is False
    other = bytes(reversed(one))
    body = assert_error(client_a.put(uid, 1, other), 409, "conflict")
    assert body["details"]["stored_sha256"] == sha(one)
    assert _data_file(uid)[:1024] == one  # the stored part is untouched


def test_a_corrupted_part_is_refused_and_not_kept(client_a):
    uid = client_a.create(DATA).json()["upload_id"]
    good = DATA[1024:2048]
    corrupted = bytes([good[0] ^ 0xFF]) + good[1:]
    body = assert_error(
        client_a.put(uid, 2, corrupted, checksum=sha(good)), 400, "checksum_mismatch"
    )
    assert body["details"]["actual"] == sha(corrupted)
    assert client_a.json("get", f"/api/uploads/{uid}").json()["parts_received"] == []
    assert _data_file(uid)[1024:2048] == bytes(1024)  # the bytes were not kept
    assert client_a.put(uid, 2, good).status_code == 201  # the good bytes then go in


def test_a_whole_file_mismatch_fails_the_upload_and_imports_nothing(
    client_a, django_capture_on_commit_callbacks
):
    declared = bytes(len(DATA))  # the client declares another file's checksum
    created = client_a.json(
        "post", "/api/uploads",
        {"filename": "p.csv", "size": len(DATA), "sha256": sha(declared), "part_size": 1024},
    ).json()  # fmt: skip
    uid = created["upload_id"]
    for n, part in enumerate(parts_of(DATA, 1024), start=1):
        assert client_a.put(uid, n, part).status_code == 201
    with django_capture_on_commit_callbacks(execute=True):
        body = assert_error(
            client_a.json("post", f"/api/uploads/{uid}/complete", {"start_import": True}),
            422,
            "checksum_mismatch",
        )
    assert body["details"] == {"expected": sha(declared), "actual": sha(DATA)}
    assert "nothing was imported" in body["message"]
    upload = Upload.objects.get(pk=uid)
    assert (upload.state, upload.import_job_id) == ("failed", None)
    assert not storage.upload_dir(uid).exists()  # disk freed
    assert_error(client_a.json("post", f"/api/uploads/{uid}/import"), 409, "conflict")


@pytest.mark.parametrize("n", [0, 4, 10**7, -1])
def test_a_part_index_out_of_range_is_refused(client_a, n):
    uid = client_a.create(DATA).json()["upload_id"]
    response = client_a.put(uid, n, DATA[:1024])
    assert_error(response, 422, "validation_error")
    assert Upload.objects.get(pk=uid).parts.count() == 0


def test_part_length_and_checksum_header_are_checked(client_a):
    uid = client_a.create(DATA).json()["upload_id"]
    short = assert_error(client_a.put(uid, 1, DATA[:1000]), 422, "validation_error")
    assert short["details"]["expected"] == 1024
    last = assert_error(client_a.put(uid, 3, DATA[:1024]), 422, "validation_error")
    assert last["details"]["expected"] == 512
    assert_error(client_a.put(uid, 1, DATA[:1024], checksum="abc"), 422, "validation_error")
    response = client_a.client.put(
        f"/api/uploads/{uid}/parts/1", data=DATA[:1024],
        content_type="application/octet-stream", headers=client_a.headers,
    )  # fmt: skip
    assert_error(response, 422, "validation_error")  # no X-Part-SHA256 at all


@pytest.mark.parametrize(
    "body",
    [
        {"filename": "a.csv", "size": 0, "sha256": "0" * 64},
        {"filename": "a.csv", "size": 10, "sha256": "xyz"},
        {"filename": "", "size": 10, "sha256": "0" * 64},
        {"filename": "a.csv", "size": 10, "sha256": "0" * 64, "part_size": 10},  # < min
        {"filename": "a.csv", "size": 10**12, "sha256": "0" * 64, "part_size": 1024},  # parts
    ],
)
def test_bad_declarations_are_refused(client_a, body):
    assert_error(client_a.json("post", "/api/uploads", body), 422, "validation_error")
    assert Upload.objects.count() == 0


def test_unknown_and_other_tenants_upload_ids_are_404(tenant_b, uploads_root):
    client_b = UploadClient("beta.localhost")
    theirs = client_b.create(DATA).json()["upload_id"]
    from tests.conftest import _ensure_tenant

    with tenant_context(_ensure_tenant("alpha")):
        client_a = UploadClient("alpha.localhost")
        for path in (f"/api/uploads/{theirs}", f"/api/uploads/{theirs}/report",
                     "/api/uploads/00000000-0000-4000-8000-000000000000"):  # fmt: skip
            assert_error(client_a.json("get", path), 404, "not_found")
        assert_error(client_a.put(theirs, 1, DATA[:1024]), 404, "not_found")
        assert_error(client_a.json("post", f"/api/uploads/{theirs}/complete"), 404, "not_found")
        assert_error(client_a.json("delete", f"/api/uploads/{theirs}"), 404, "not_found")
        # Tenant B's token on tenant A's host: not a token of this tenant.
        intruder = UploadClient("alpha.localhost", token=client_b.token)
        assert_error(intruder.json("get", f"/api/uploads/{theirs}"), 401, "unauthorized")
    assert Upload.objects.get(pk=theirs).parts.count() == 0  # nothing reached B's upload
    assert storage.upload_dir(theirs, "test_beta").is_dir()


def test_request_ids_on_success_and_error(client_a):
    body = {"filename": "a.csv", "size": 5, "sha256": sha(b"hello")}
    ok = client_a.json("post", "/api/uploads", body, **{"X-Request-ID": "client-chosen-id-123"})
    assert ok.status_code == 201
    assert ok["X-Request-ID"] == "client-chosen-id-123"
    uid = ok.json()["upload_id"]
    put = client_a.put(uid, 1, b"hello")
    assert put.status_code == 201 and put["X-Request-ID"]
    error = client_a.put(uid, 1, b"HELLO", checksum=sha(b"hello"))
    assert_error(error, 400, "checksum_mismatch")
    assert error["X-Request-ID"] != put["X-Request-ID"]


def test_quota_is_per_tenant_and_answers_413(client_a):
    with override_settings(UPLOADS_TENANT_QUOTA_BYTES=4096):
        assert client_a.create(DATA).status_code == 201
        body = assert_error(client_a.create(DATA), 413, "too_large")
        assert body["details"]["used_bytes"] == len(DATA)
    assert Upload.objects.count() == 1


def test_delete_aborts_and_frees_disk(client_a, django_capture_on_commit_callbacks):
    uid = client_a.create(DATA).json()["upload_id"]
    assert client_a.put(uid, 1, DATA[:1024]).status_code == 201
    assert storage.upload_dir(uid).is_dir()
    with django_capture_on_commit_callbacks(execute=True):
        assert client_a.json("delete", f"/api/uploads/{uid}").status_code == 204
    assert not storage.upload_dir(uid).exists()
    assert Upload.objects.get(pk=uid).state == "aborted"
    assert_error(client_a.put(uid, 2, DATA[1024:2048]), 409, "conflict")


def test_filenames_are_labels_never_paths(client_a, uploads_root):
    response = client_a.create(b"x,y\n", filename="../../etc/pass\x07wd;rm -rf.csv", part_size=None)
    assert response.status_code == 201, response.content
    upload = response.json()
    assert upload["filename"] == "passwd_rm -rf.csv"
    files = [p.relative_to(uploads_root) for p in uploads_root.rglob("*") if p.is_file()]
    assert [str(p) for p in files] == [f"test_alpha/{upload['upload_id']}/data"]


def test_a_read_only_token_cannot_upload(client_a):
    reader = UploadClient("alpha.localhost", read_only=True)
    assert_error(reader.create(DATA), 403, "forbidden")
    uid = client_a.create(DATA).json()["upload_id"]
    assert_error(reader.put(uid, 1, DATA[:1024]), 403, "forbidden")
    assert reader.json("get", f"/api/uploads/{uid}").status_code == 200


def test_stale_uploads_expire_and_the_schedule_exists(client_a, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone
    from django_q.models import Schedule

    from uploads.services import uploads_expire_stale

    stale = client_a.create(DATA).json()["upload_id"]
    fresh = client_a.create(DATA).json()["upload_id"]
    Upload.objects.filter(pk=stale).update(created_at=timezone.now() - timedelta(hours=30))
    with django_capture_on_commit_callbacks(execute=True):
        assert uploads_expire_stale() == 1
    assert Upload.objects.get(pk=stale).state == "expired"
    assert not storage.upload_dir(stale).exists()
    assert Upload.objects.get(pk=fresh).state == "receiving"
    # The migration's schedule (tests that commit flush the public tables, so run it again:
    # it is idempotent, one schedule in all).
    from django.apps import apps

    migration = importlib.import_module("uploads.migrations.0002_expire_schedule")
    migration.create_schedule(apps, None)
    migration.create_schedule(apps, None)
    schedule = Schedule.objects.get(name="uploads-expire-stale")
    assert schedule.func == "uploads.tasks.expire_stale_uploads_all_tenants"


def test_the_openapi_schema_documents_the_raw_part_body(client_a):
    schema = client_a.json("get", "/api/openapi.json").json()
    put = schema["paths"]["/api/uploads/{upload_id}/parts/{n}"]["put"]
    assert "application/octet-stream" in put["requestBody"]["content"]
    assert any(p["name"] == "X-Part-SHA256" for p in put["parameters"])


def test_memory_stays_flat_the_part_is_streamed(client_a, monkeypatch):
    """The view never reads request.body (Django's 2.5 MB in-memory limit would refuse
    a big part); a part larger than DATA_UPLOAD_MAX_MEMORY_SIZE goes through."""
    big = os.urandom(3 * 1024 * 1024)
    with override_settings(
        DATA_UPLOAD_MAX_MEMORY_SIZE=1024 * 1024, UPLOADS_MAX_PART_SIZE=4 * 1024 * 1024
    ):
        uid = client_a.create(big, part_size=4 * 1024 * 1024).json()["upload_id"]
        assert client_a.put(uid, 1, big).status_code == 201
    assert _data_file(uid) == big
