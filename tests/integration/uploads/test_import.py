"""The import job (validate rows → upsert products → publish batch) run by the engine in this
process: reports, idempotence, file-level errors, and a cancel mid-run writing nothing."""

from __future__ import annotations

import csv
import io
import json
import threading

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django_tenants.utils import schema_context

from marketplaces.models import Product
from orchestration.models import MarketplaceJob
from orchestration.services import job_cancel, job_execute_now
from tests.e2e.conftest import wait_for
from tests.factories import ProductFactory
from tests.integration.uploads.support import UploadClient, assert_error, products_csv
from uploads import storage
from uploads.models import Upload

FAST = {"CANCEL_POLL_SECONDS": 0.02, "RETRY_BASE_SECONDS": 0.01, "RETRY_MAX_SECONDS": 0.05}

MIXED = (
    "sku,title,price,quantity,condition,images,colour\n"
    "MIX-1,Good jacket,19.90,2,good,https://img.example.test/1.jpg|https://img.example.test/2.jpg,red\n"
    "MIX-2,,10.00,1,good,,blue\n"  # line 3: no title
    "MIX-3,Bad price,-4,1,good,,\n"  # line 4
    "MIX-4,Weird condition,5.5,1,mint,,\n"  # line 5
    '"MIX-5","Quoted, with a comma",7.25,,new,,\n'  # line 6, quantity defaults to 1
    "MIX-1,Duplicate of line 2,1.00,1,good,,\n"  # line 7
    "\n"
    "MIX-6,Too many,1.00,1,good,,,extra\n"  # line 9: a field too many
)


@pytest.fixture
def shop(tx_tenant_a, uploads_root):
    with override_settings(ORCHESTRATION=FAST):
        yield UploadClient("alpha.localhost")


def _import(client: UploadClient, data: bytes, filename="products.csv", **complete) -> Upload:
    upload = client.send_all(data, filename=filename, start_import=True, **complete)
    job_id = upload["import_job_id"]
    assert MarketplaceJob.objects.get(pk=job_id).status == "queued"
    job_execute_now(job_id=job_id)
    return Upload.objects.select_related("import_job").get(pk=upload["upload_id"])


def test_a_csv_import_keeps_valid_rows_and_reports_the_others_by_line(shop):
    upload = _import(shop, MIXED.encode())
    job = upload.import_job
    assert job.status == "completed", job.error_message
    assert [t.step_type for t in job.tasks.order_by("step_order")] == [
        "validate_rows", "upsert_products", "create_batch",
    ]  # fmt: skip
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["MIX-1", "MIX-5"]
    jacket = Product.objects.get(sku="MIX-1")
    assert (jacket.title, str(jacket.price), jacket.quantity) == ("Good jacket", "19.90", 2)
    assert jacket.images == ["https://img.example.test/1.jpg", "https://img.example.test/2.jpg"]
    assert Product.objects.get(sku="MIX-5").quantity == 1

    summary = job.result["validate_rows"]
    assert (summary["rows_read"], summary["valid"], summary["rejected"]) == (7, 2, 5)
    lines = {e["line"]: e["errors"] for e in summary["errors"]}
    assert lines[3] == ["title: required"]
    assert lines[4] == ["price: must be more than 0"]
    assert lines[5][0].startswith("condition: one of")
    assert lines[7] == ["sku: duplicate of line 2"]
    assert "8 fields, the header has 7" in lines[9][0]
    assert summary["report_url"] == f"/api/uploads/{upload.pk}/report"

    report = shop.json("get", f"/api/uploads/{upload.pk}/report").json()
    assert (report["rows_read"], report["valid"], report["rejected"]) == (7, 2, 5)
    assert (report["created"], report["updated"], report["import_status"]) == (2, 0, "completed")
    rejected = shop.json("get", f"/api/uploads/{upload.pk}/report.csv")
    assert rejected.status_code == 200 and rejected["Content-Type"] == "text/csv"
    rows = list(csv.reader(io.StringIO(b"".join(rejected.streaming_content).decode())))
    assert rows[0] == ["line", "sku", "errors"]
    assert [r[0] for r in rows[1:]] == ["3", "4", "5", "7", "9"]


def test_importing_again_changes_nothing_and_updates_what_changed(shop):
    first = _import(shop, products_csv(30))
    assert first.import_job.result["upsert_products"]["created"] == 30
    again = _import(shop, products_csv(30))
    assert again.import_job.result["upsert_products"] == {
        "rows": 30, "created": 0, "updated": 0, "unchanged": 30,
    }  # fmt: skip
    changed = products_csv(30).replace(b"Product 7 with", b"Product seven with")
    third = _import(shop, changed)
    assert third.import_job.result["upsert_products"]["updated"] == 1
    assert Product.objects.get(sku="IMP-000007").title.startswith("Product seven")
    assert Product.objects.count() == 30


def test_json_lines_are_imported_with_line_numbers(shop):
    rows = [
        {"sku": "JL-1", "title": "From JSON", "price": 12.5, "images": ["https://i.test/a.jpg"]},
        "not an object",
        {"sku": "JL-2", "title": "Free", "price": 0},
    ]
    data = ("\n".join(json.dumps(r) for r in rows) + "\n{broken\n").encode()
    upload = _import(shop, data, filename="feed.jsonl")
    summary = upload.import_job.result["validate_rows"]
    assert (summary["valid"], summary["rejected"]) == (1, 3)
    assert [e["line"] for e in summary["errors"]] == [2, 3, 4]
    assert str(Product.objects.get(sku="JL-1").price) == "12.50"


def test_a_file_without_the_required_columns_fails_clearly_and_imports_nothing(shop):
    upload = _import(shop, b"name,cost\nA,1\n")
    assert upload.import_job.status == "failed"
    assert "lacks the column(s) sku, title, price" in upload.import_job.error_message
    assert Product.objects.count() == 0
    report = shop.json("get", f"/api/uploads/{upload.pk}/report").json()
    assert report["import_status"] == "failed"
    assert "lacks the column" in report["import_error"]


def test_import_needs_a_complete_upload_and_known_marketplaces(shop):
    created = shop.create(b"sku,title,price\n").json()
    assert_error(shop.json("post", f"/api/uploads/{created['upload_id']}/import"), 409, "conflict")
    done = shop.send_all(b"sku,title,price\nA,B,1\n")
    body = assert_error(
        shop.json("post", f"/api/uploads/{done['upload_id']}/import", {"marketplaces": ["amazon"]}),
        422,
        "validation_error",
    )
    assert body["details"]["unknown"] == ["amazon"]
    assert Upload.objects.get(pk=done["upload_id"]).import_job_id is None
    first = shop.json("post", f"/api/uploads/{done['upload_id']}/import").json()
    second = shop.json("post", f"/api/uploads/{done['upload_id']}/import").json()
    assert first["import_job_id"] == second["import_job_id"]  # one job per upload
    from audit.models import AuditEntry

    started = AuditEntry.objects.get(action="import.start")  # once, by the first request
    assert started.door.startswith("api:")
    assert ["job", str(first["import_job_id"])] in started.targets
    assert_error(shop.json("delete", f"/api/uploads/{done['upload_id']}"), 409, "conflict")


errors: list[BaseException] = []


def _in_thread(target) -> threading.Thread:
    def run():
        try:
            with schema_context("test_alpha"):
                target()
        except BaseException as exc:  # surfaced by the test through errors
            errors.append(exc)
            raise
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE %s",
            ["%INSERT INTO%marketplaces_product%"],
        )
        return cursor.fetchone()[0]


def _cancel_polled_since(moment) -> bool:
    """The worker ran its cancel poll (an EXISTS on cancel_requested) after ``moment``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            " AND query LIKE %s AND query_start > %s",
            ["%cancel_requested%LIMIT 1%", moment],
        )
        return cursor.fetchone()[0] > 0


def test_cancelling_an_import_mid_run_writes_nothing(shop):
    """The upsert is held on a row lock in its second chunk of 1,000; the job is cancelled;
    once the worker has seen the cancel the lock is released: the step stops at its next
    chunk and its transaction rolls back. No product of the file exists afterwards."""
    ProductFactory(sku="IMP-001500", title="Before the import")
    upload = shop.send_all(products_csv(4000), part_size=64 * 1024, start_import=True)
    job_id = upload["import_job_id"]
    locked, release = threading.Event(), threading.Event()

    def hold_lock():
        with transaction.atomic():
            list(Product.objects.select_for_update().filter(sku="IMP-001500"))
            locked.set()
            release.wait(120)

    holder = _in_thread(hold_lock)
    assert locked.wait(30)
    outcome: list = []
    worker = _in_thread(lambda: outcome.append(job_execute_now(job_id=job_id)))
    try:
        wait_for(
            lambda: _lock_waiters() > 0 or errors or outcome,
            timeout=60,
            what="the upsert to wait on the lock",
        )
        assert not errors and not outcome, (
            errors,
            outcome,
            MarketplaceJob.objects.get(pk=job_id).error_message,
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT now()")
            moment = cursor.fetchone()[0]
        job_cancel(job_id=job_id)
        wait_for(lambda: _cancel_polled_since(moment), timeout=60, what="the worker's cancel poll")
    finally:
        release.set()
        holder.join(30)
    worker.join(60)
    assert outcome == ["cancelled"]
    job = MarketplaceJob.objects.get(pk=job_id)
    statuses = dict(job.tasks.values_list("step_type", "status"))
    assert statuses == {
        "validate_rows": "completed", "upsert_products": "cancelled", "create_batch": "cancelled",
    }  # fmt: skip
    assert list(Product.objects.values_list("sku", "title")) == [
        ("IMP-001500", "Before the import")
    ]
    assert Upload.objects.get(pk=upload["upload_id"]).publish_batch_id is None


def test_the_import_files_stay_in_the_upload_directory(shop):
    upload = _import(shop, products_csv(5, bad_every=2))
    names = sorted(p.name for p in storage.upload_dir(upload.pk).iterdir())
    assert names == ["data", "rejected.csv", "summary.json", "valid.jsonl"]
    assert upload.import_job.result["validate_rows"]["rejected"] == 2
