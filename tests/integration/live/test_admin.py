"""The engine's admin: live columns, filters and search, job timeline, controls, bulk actions,
read-only staff, starting a batch, estimated counts."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.urls import reverse

from orchestration import paginators
from orchestration.models import Batch, JobRun, MarketplaceJob
from orchestration.services import (
    JobSpec,
    batch_create,
    job_create,
    jobs_cancel,
    run_available_jobs,
)
from tests.engine_providers import BRIDGE, MARKETPLACE, set_faults
from tests.factories import ProductFactory
from tests.helpers import staff_client
from tests.integration.live.scenarios import make_staff

JOBS = "/admin/orchestration/marketplacejob/"
BATCHES = "/admin/orchestration/batch/"


@pytest.fixture
def params(tmp_path):
    return {"ledger": str(tmp_path / "ledger.jsonl"), "faults": str(tmp_path / "faults.json")}


@pytest.fixture
def admin_client(tenant_a):
    return staff_client(tenant_a, "admin-staff")


@pytest.fixture
def viewer_client(tenant_a):
    from django.test import Client

    user = make_staff(tenant_a, "read-only", role="viewer")
    connection.set_tenant(tenant_a)
    client = Client(HTTP_HOST="alpha.localhost")
    client.force_login(user)
    return client


def _failed_job(params, *, step="step2", sku="SKU-FAIL") -> MarketplaceJob:
    """A job whose step fails permanently (one run, FAILED, with a traceback)."""
    set_faults(params["faults"], {step: {"mode": "permanent", "times": 1}})
    job = job_create(marketplace=MARKETPLACE, action="three", sku=sku, params=params)
    run_available_jobs()
    job.refresh_from_db()
    assert job.status == "failed"
    return job


def _ids_in(page) -> set[int]:
    return {int(i) for i in re.findall(r'data-live-job="(\d+)"', page.text)}


def test_job_list_has_live_badges_filters_and_search(admin_client, params):
    failed = _failed_job(params, sku="RED-JACKET")
    other = job_create(marketplace=BRIDGE, action="one", sku="BLUE-SHOE", params=params)
    page = admin_client.get(JOBS)
    assert page.status_code == 200
    assert "orchestration/live.js" in page.text and "data-live-jobs-on-page" in page.text
    assert f'<span class="live-badge status-failed" data-live-job="{failed.pk}">' in page.text
    assert _ids_in(page) == {failed.pk, other.pk}
    for query, expected in [
        ("status__exact=failed", {failed.pk}),
        (f"marketplace={BRIDGE}", {other.pk}),
        ("action__exact=three", {failed.pk}),
        (f"batch={failed.batch_id or 0}", set()),
        ("q=red-jack", {failed.pk}),  # SKU, case-insensitive
        ("q=invalid+field", {failed.pk}),  # error text
        ("created_at__gte=2000-01-01T00:00:00%2B00:00", {failed.pk, other.pk}),
    ]:
        assert _ids_in(admin_client.get(f"{JOBS}?{query}")) == expected, query
    # Filter choices come from the provider registry, not from a DISTINCT over the table.
    assert f"?marketplace={MARKETPLACE}" in page.text


def test_job_detail_shows_the_timeline_and_run_history(admin_client, params):
    set_faults(params["faults"], {"step2": {"mode": "retryable", "times": 1}})
    job = job_create(marketplace=MARKETPLACE, action="three", params=params, max_retries=0)
    run_available_jobs()
    job.refresh_from_db()
    assert job.status == "failed"
    admin_client.post(reverse("tenant_admin:orchestration_job_control", args=[job.pk, "retry"]))
    run_available_jobs()
    page = admin_client.get(f"{JOBS}{job.pk}/change/")
    assert page.status_code == 200
    text = page.text
    assert f'"subscribe": "job", "id": {job.pk}' in text
    for step in ("step1", "step2", "step3"):
        assert step in text
    assert f"remote_id=step1-{job.pk}" in text  # output / remote ids
    assert text.count('class="run status-') == 2
    assert "HTTP 503 from test API during step2" in text and "traceback" in text
    assert "attempt 1" in text  # the second run is a retry of the first
    first, second = JobRun.objects.filter(job=job).order_by("attempt")
    assert second.retry_of_id == first.pk
    fragment = admin_client.get(reverse("tenant_admin:orchestration_job_timeline", args=[job.pk]))
    assert fragment.status_code == 200 and "<h2>Runs</h2>" in fragment.text
    assert "<html" not in fragment.text


def test_job_controls_call_the_services(admin_client, params):
    job = _failed_job(params)
    control = lambda verb: reverse("tenant_admin:orchestration_job_control", args=[job.pk, verb])  # noqa: E731
    response = admin_client.post(control("retry"))
    assert response.status_code == 302
    assert MarketplaceJob.objects.get(pk=job.pk).status == "queued"
    # Refused transitions answer with a reason, nothing changes.
    answer = admin_client.post(control("retry"), HTTP_X_REQUESTED_WITH="fetch")
    assert answer.status_code == 409 and "only failed or cancelled" in answer.json()["message"]
    answer = admin_client.post(control("cancel"), HTTP_X_REQUESTED_WITH="fetch")
    assert answer.json() == {"ok": True, "message": f"Cancel requested for job {job.pk}.",
                             "job_id": job.pk, "status": "cancelled"}  # fmt: skip
    admin_client.post(control("run_now"))
    job.refresh_from_db()
    assert (job.status, job.direct) == ("queued", True)
    run_available_jobs()
    assert MarketplaceJob.objects.get(pk=job.pk).status == "completed"
    response = admin_client.post(control("retry_from_step"), {"step_order": "2"})
    assert response.status_code == 302
    job.refresh_from_db()
    statuses = list(job.tasks.order_by("step_order").values_list("status", flat=True))
    assert (job.status, statuses) == ("queued", ["completed", "pending", "pending"])
    assert admin_client.get(control("retry")).status_code == 405


def test_bulk_retry_covers_every_page_of_the_filter_after_confirmation(admin_client, params):
    jobs = batch_create(
        name="many", start=False,
        jobs=[JobSpec(marketplace=MARKETPLACE, action="one", params=params) for _ in range(120)],
    )  # fmt: skip
    jobs_cancel(queryset=MarketplaceJob.objects.filter(batch=jobs))
    untouched = job_create(marketplace=BRIDGE, action="one", params=params)
    jobs_cancel(queryset=MarketplaceJob.objects.filter(pk=untouched.pk))
    listing = admin_client.get(f"{JOBS}?marketplace={MARKETPLACE}")
    assert len(_ids_in(listing)) == 100  # one page of 100 …
    link = re.search(r'href="([^"]*bulk/retry/[^"]*)"', listing.text).group(1).replace("&amp;", "&")
    confirm = admin_client.get(link)
    assert confirm.status_code == 200
    assert "<strong>120</strong> jobs" in confirm.text  # … the confirmation counts all 120
    assert f"marketplace: {MARKETPLACE}" in confirm.text
    assert MarketplaceJob.objects.filter(status="queued").count() == 0  # nothing before confirming
    done = admin_client.post(
        link, {"confirm": "1", "_changelist_filters": f"marketplace={MARKETPLACE}"}
    )
    # A tracked operation: what the request did not finish, a worker does (played here).
    from operations.models import Operation
    from operations.services import operation_run

    operation = Operation.objects.get()
    assert (operation.kind, operation.total) == ("retry", 120)
    assert done.status_code == 302
    if not done["Location"].endswith(f"?marketplace={MARKETPLACE}"):
        assert done["Location"].endswith(f"/operations/operation/{operation.pk}/change/")
        while operation_run(operation_id=operation.pk):
            pass
    assert MarketplaceJob.objects.filter(batch=jobs, status="queued").count() == 120
    assert MarketplaceJob.objects.get(pk=untouched.pk).status == "cancelled"


def test_bulk_cancel_takes_the_search_into_account(admin_client, params):
    keep = job_create(marketplace=MARKETPLACE, action="one", sku="KEEP-1", params=params)
    stop = [job_create(marketplace=MARKETPLACE, action="one", sku=f"STOP-{i}", params=params)
            for i in range(3)]  # fmt: skip
    url = reverse("tenant_admin:orchestration_job_bulk", args=["cancel"])
    confirm = admin_client.get(url, {"_changelist_filters": "q=stop"})
    assert "<strong>3</strong> jobs" in confirm.text and "search: “stop”" in confirm.text
    admin_client.post(url, {"confirm": "1", "_changelist_filters": "q=stop"})
    assert {j.status for j in MarketplaceJob.objects.filter(pk__in=[j.pk for j in stop])} == {
        "cancelled"
    }
    assert MarketplaceJob.objects.get(pk=keep.pk).status == "queued"


def test_read_only_staff_see_everything_and_no_action(viewer_client, params):
    job = _failed_job(params)
    listing = viewer_client.get(JOBS)
    assert listing.status_code == 200 and job.sku in listing.text
    assert 'name="action"' not in listing.text and "action-checkbox" not in listing.text
    assert "bulk/retry" not in listing.text and "bulk/cancel" not in listing.text
    detail = viewer_client.get(f"{JOBS}{job.pk}/change/")
    assert detail.status_code == 200 and "step2" in detail.text
    assert "/control/" not in detail.text and "Retry from" not in detail.text
    assert 'name="_save"' not in detail.text
    batches = viewer_client.get(BATCHES)
    assert batches.status_code == 200 and 'name="action"' not in batches.text
    assert "/batch/add/" not in batches.text
    # And the doors behind the buttons are shut as well.
    control = reverse("tenant_admin:orchestration_job_control", args=[job.pk, "retry"])
    assert viewer_client.post(control).status_code == 403
    bulk = reverse("tenant_admin:orchestration_job_bulk", args=["retry"])
    assert viewer_client.get(bulk).status_code == 403
    assert viewer_client.post(
        JOBS, {"action": "retry", "_selected_action": [job.pk]}
    ).status_code in (200, 302)
    assert MarketplaceJob.objects.get(pk=job.pk).status == "failed"
    assert viewer_client.get(f"{BATCHES}add/").status_code == 403


def test_batch_list_shows_live_progress_and_status_counts(admin_client, params):
    done = batch_create(
        name="done", jobs=[JobSpec(marketplace=MARKETPLACE, action="one", params=params)] * 3
    )
    run_available_jobs()
    waiting = batch_create(
        name="waiting", start=False,
        jobs=[JobSpec(marketplace=MARKETPLACE, action="one", params=params)] * 2,
    )  # fmt: skip
    page = admin_client.get(BATCHES)
    assert page.status_code == 200
    assert '"subscribe": "overview"' in page.text
    assert f'data-live-batch="{done.pk}" data-status="completed"' in page.text
    assert '<div class="live-bar" style="width: 100%">' in page.text
    assert f'data-live-batch="{waiting.pk}" data-status="pending"' in page.text
    assert re.search(r"status-completed\">completed</span> 1<", page.text)
    assert re.search(r"status-pending\">pending</span> 1<", page.text)
    assert f'data-live-batch-counts="{done.pk}"' in page.text


def test_batch_detail_resumes_and_cancels_through_the_services(admin_client, params):
    set_faults(params["faults"], {"only": {"mode": "permanent", "times": 1}})
    batch = batch_create(
        name="group", mode=Batch.Mode.SEQUENTIAL,
        jobs=[JobSpec(marketplace=MARKETPLACE, action="one", params=params) for _ in range(3)],
    )  # fmt: skip
    run_available_jobs()
    batch.refresh_from_db()
    assert (batch.status, batch.failed_jobs, batch.skipped_jobs) == ("partial", 1, 2)
    page = admin_client.get(f"{BATCHES}{batch.pk}/change/")
    assert f'"subscribe": "batch", "id": {batch.pk}' in page.text
    assert "Resume group" in page.text and f"?batch={batch.pk}" in page.text
    admin_client.post(
        reverse("tenant_admin:orchestration_batch_control", args=[batch.pk, "resume"])
    )
    run_available_jobs()
    batch.refresh_from_db()
    assert (batch.status, batch.completed_jobs) == ("completed", 3)
    again = batch_create(name="stop", jobs=[JobSpec(marketplace=MARKETPLACE, action="one")])
    admin_client.post(
        reverse("tenant_admin:orchestration_batch_control", args=[again.pk, "cancel"])
    )
    assert Batch.objects.get(pk=again.pk).status == "cancelled"


def test_starting_a_batch_from_the_admin(admin_client):
    products = ProductFactory.create_batch(3)
    form = {"name": "Spring drop", "job_type": f"{MARKETPLACE}:one", "mode": "parallel",
            "skus": "\n".join(p.sku for p in products), "priority": "2"}  # fmt: skip
    review = admin_client.post(f"{BATCHES}add/", form)  # the review step creates nothing
    assert review.status_code == 200 and not Batch.objects.filter(name="Spring drop").exists()
    confirmed = review.context["form"]["confirmed"].value()
    response = admin_client.post(f"{BATCHES}add/", {**form, "confirmed": confirmed})
    assert response.status_code == 302
    batch = Batch.objects.get(name="Spring drop")
    assert response["Location"].endswith(f"/batch/{batch.pk}/change/")
    jobs = list(batch.jobs.order_by("sequence"))
    assert [(j.sku, j.product_id, j.priority, j.status) for j in jobs] == [
        (p.sku, p.pk, 2, "queued") for p in products
    ]
    assert batch.created_by == "admin-staff"
    bad = admin_client.post(f"{BATCHES}add/", {**form, "skus": "NOPE-1 " + products[0].sku})
    assert bad.status_code == 200 and "Unknown SKU(s): NOPE-1" in bad.text


def test_estimated_counts_on_large_tables(tenant_a, monkeypatch):
    batch = batch_create(
        name="count", start=False,
        jobs=[JobSpec(marketplace=MARKETPLACE, action="one") for _ in range(40)],
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orchestration_marketplacejob")
    monkeypatch.setattr(paginators, "EXACT_UP_TO", 10)
    all_jobs = paginators.EstimatedCountPaginator(MarketplaceJob.objects.order_by("pk"), 100)
    assert all_jobs.count == 40 and all_jobs.estimated  # from pg_class.reltuples (this schema)
    assert paginators.table_estimate(MarketplaceJob.objects.all()) == 40
    filtered = paginators.EstimatedCountPaginator(
        MarketplaceJob.objects.filter(batch=batch).order_by("pk"), 100
    )
    assert filtered.count >= 11 and filtered.estimated  # capped exact count, then the plan
    small = paginators.EstimatedCountPaginator(
        MarketplaceJob.objects.filter(
            pk__in=list(batch.jobs.values_list("pk", flat=True))[:5]
        ).order_by("pk"),
        100,
    )
    assert small.count == 5 and not small.estimated


def test_dashboard_link_and_json_answers_are_json(admin_client, params):
    job = _failed_job(params)
    answer = admin_client.post(f"/dashboard/jobs/{job.pk}/retry/", HTTP_X_REQUESTED_WITH="fetch")
    assert json.loads(answer.content)["status"] == "queued"
