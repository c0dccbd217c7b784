"""The staff pages say what is true and what will happen (issue 11), without a browser."""

from __future__ import annotations

from django.db import connection

from orchestration.engine.claims import claim_jobs
from orchestration.models import Batch, MarketplaceJob
from orchestration.services import JobSpec, batch_create, job_create, resource_set_limits
from tests.engine_providers import MARKETPLACE
from tests.factories import ProductFactory
from tests.helpers import staff_client
from tests.integration.live.scenarios import make_staff

JOBS = "/admin/orchestration/marketplacejob/"
BATCHES = "/admin/orchestration/batch/"


def test_run_now_says_the_job_waits_when_its_resource_is_full(tenant_a):
    client = staff_client(tenant_a, "ui-admin")
    resource_set_limits(key=MARKETPLACE, concurrency=1, rate_per_minute=None)
    busy = job_create(marketplace=MARKETPLACE, action="one", sku="BUSY")
    waiting = job_create(marketplace=MARKETPLACE, action="one", sku="WAITS")
    assert [c.job_id for c in claim_jobs(limit=1)] == [busy.pk]
    answer = client.post(f"{JOBS}{waiting.pk}/control/run_now/", HTTP_X_REQUESTED_WITH="fetch")
    message = answer.json()["message"]
    assert f"runs next on {MARKETPLACE} (1/1 busy)" in message and "Started" not in message
    page = client.get(f"{JOBS}{waiting.pk}/change/").text
    assert 'class="reservation"' in page and "Runs next on" in page
    assert "run now · reserved" in client.get(JOBS).text
    assert f"#{waiting.pk} queued" in client.get("/dashboard/panels/queues/").text


def test_the_batch_page_has_no_form_and_offers_nothing_once_completed(tenant_a):
    client = staff_client(tenant_a, "ui-admin")
    batch = batch_create(name="Done", jobs=[JobSpec(marketplace=MARKETPLACE, action="one")])
    Batch.objects.filter(pk=batch.pk).update(completed_jobs=1)
    page = client.get(f"{BATCHES}{batch.pk}/change/").text
    assert 'name="_save"' not in page and "batch-summary" in page
    summary = client.get(f"{BATCHES}{batch.pk}/summary/")
    assert summary.status_code == 200 and "<html" not in summary.text
    assert 'class="batch-job"' in summary.text


def test_starting_a_batch_takes_all_products_or_skus_in_any_case(tenant_a):
    client = staff_client(tenant_a, "ui-admin")
    products = ProductFactory.create_batch(3)
    form = {"name": "Any case", "job_type": f"{MARKETPLACE}:one", "mode": "parallel",
            "priority": "0", "skus": products[0].sku.lower()}  # fmt: skip
    assert _start(client, form).status_code == 302
    assert Batch.objects.get(name="Any case").total_jobs == 1
    every = {**form, "name": "Everything", "skus": "", "all_products": "on"}
    assert _start(client, every).status_code == 302
    assert Batch.objects.get(name="Everything").total_jobs == 3
    empty = client.post(f"{BATCHES}add/", {**form, "skus": ""})
    assert "All products" in empty.text and Batch.objects.count() == 2


def _start(client, form):
    """The start form's two steps: the summary, then the confirmed start."""
    review = client.post(f"{BATCHES}add/", form)
    assert review.status_code == 200 and "Check before starting" in review.text, review.text[:500]
    confirmed = review.context["form"]["confirmed"].value()
    return client.post(f"{BATCHES}add/", {**form, "confirmed": confirmed})


def test_the_start_form_shows_the_count_and_limits_before_creating_anything(tenant_a):
    client = staff_client(tenant_a, "ui-review")
    products = ProductFactory.create_batch(3)
    resource_set_limits(key=MARKETPLACE, concurrency=2, rate_per_minute=None)
    form = {"name": "Reviewed", "job_type": f"{MARKETPLACE}:one", "mode": "parallel",
            "priority": "0", "skus": " ".join(p.sku for p in products)}  # fmt: skip
    review = client.post(f"{BATCHES}add/", form)
    assert "3 jobs" in review.text and "2 at a time" in review.text
    assert not Batch.objects.filter(name="Reviewed").exists()  # nothing created yet
    # Changed after the review (one SKU fewer): a new summary, still nothing created.
    fingerprint = review.context["form"]["confirmed"].value()
    changed = client.post(
        f"{BATCHES}add/", {**form, "skus": products[0].sku, "confirmed": fingerprint}
    )
    assert changed.status_code == 200 and "1 job" in changed.text
    assert not Batch.objects.filter(name="Reviewed").exists()
    assert _start(client, form).status_code == 302
    assert Batch.objects.get(name="Reviewed").total_jobs == 3


def test_publish_to_on_the_product_list_fills_the_start_form(tenant_a):
    client = staff_client(tenant_a, "ui-publish")
    products = ProductFactory.create_batch(4)
    picked = products[:3]
    answer = client.post(
        "/admin/marketplaces/product/",
        {"action": "publish_to", "_selected_action": [p.pk for p in picked]},
    )
    assert answer.status_code == 302 and answer["Location"].endswith("/batch/add/")
    page = client.get(answer["Location"])
    textarea = page.context["form"]["skus"].value()
    assert sorted(textarea.split()) == sorted(p.sku for p in picked)
    assert "3 selected products" in page.text
    form = {"name": "Picked", "job_type": f"{MARKETPLACE}:one", "mode": "parallel",
            "priority": "0", "skus": textarea}  # fmt: skip
    assert _start(client, form).status_code == 302
    assert Batch.objects.get(name="Picked").total_jobs == 3


def test_a_viewer_opening_an_action_gets_a_page_that_explains(tenant_a):
    from django.test import Client

    job = job_create(marketplace=MARKETPLACE, action="one", sku="LOOK")
    user = make_staff(tenant_a, "ui-viewer", role="viewer")
    connection.set_tenant(tenant_a)
    viewer = Client(HTTP_HOST="alpha.localhost")
    viewer.force_login(user)
    answer = viewer.post(f"{JOBS}{job.pk}/control/retry/")
    assert answer.status_code == 403
    assert "may look at batches and jobs but not act" in answer.content.decode()
    assert MarketplaceJob.objects.get(pk=job.pk).status == "queued"


def _failed(sku: str, tmp_path) -> MarketplaceJob:
    from orchestration.services import run_available_jobs
    from tests.engine_providers import set_faults

    faults = tmp_path / f"{sku}.json"
    set_faults(faults, {"only": {"mode": "permanent", "times": 1}})
    job = job_create(marketplace=MARKETPLACE, action="one", sku=sku, params={"faults": str(faults)})
    run_available_jobs()
    job.refresh_from_db()
    assert job.status == "failed"
    return job


def test_retrying_selected_failures_shows_those_jobs_not_the_empty_failed_filter(
    tenant_a, tmp_path
):
    client = staff_client(tenant_a, "ui-admin")
    jobs = [_failed(f"SEL-{i}", tmp_path) for i in range(2)]
    answer = client.post(f"{JOBS}?status__exact=failed",
                         {"action": "retry", "_selected_action": [j.pk for j in jobs]})  # fmt: skip
    assert answer.status_code == 302
    assert answer["Location"].endswith(f"?id__in={jobs[0].pk},{jobs[1].pk}")
    listing = client.get(answer["Location"]).text
    assert all(f'data-live-job="{j.pk}"' in listing for j in jobs)


def test_the_dashboard_groups_failures_by_error_with_see_all_and_retry_all(tenant_a, tmp_path):
    client = staff_client(tenant_a, "ui-admin")
    for i in range(3):
        _failed(f"GRP-{i}", tmp_path)
    panel = client.get("/dashboard/panels/failures/").text
    assert 'class="failure-group"' in panel and "<b>3</b>" in panel
    assert "see all" in panel and "retry all of these" in panel


def test_a_skipped_job_links_to_the_job_that_stopped_its_group(tenant_a, tmp_path):
    from orchestration.services import run_available_jobs
    from tests.engine_providers import set_faults

    client = staff_client(tenant_a, "ui-admin")
    faults = tmp_path / "group.json"
    set_faults(faults, {"only": {"mode": "permanent", "times": 1}})
    specs = [JobSpec(marketplace=MARKETPLACE, action="one", sku=f"G-{i}",
                     params={"faults": str(faults)}) for i in range(3)]  # fmt: skip
    batch = batch_create(name="Group", jobs=specs, mode=Batch.Mode.SEQUENTIAL)
    run_available_jobs()
    first, skipped = batch.jobs.order_by("sequence")[:2]
    assert (first.status, skipped.status) == ("failed", "skipped")
    page = client.get(f"{JOBS}{skipped.pk}/change/").text
    assert 'class="stopped-by"' in page and f"/marketplacejob/{first.pk}/change/" in page


def test_retry_all_matching_returns_to_the_filter_without_its_status(tenant_a, tmp_path):
    client = staff_client(tenant_a, "ui-admin")
    jobs = [_failed(f"ALL-{i}", tmp_path) for i in range(2)]
    url = "/admin/orchestration/marketplacejob/bulk/retry/"
    filters = f"status__exact=failed&marketplace={MARKETPLACE}"
    done = client.post(url, {"confirm": "1", "_changelist_filters": filters})
    assert done.status_code == 302 and done["Location"].endswith(f"?marketplace={MARKETPLACE}")
    listing = client.get(done["Location"]).text
    assert all(f'data-live-job="{j.pk}"' in listing for j in jobs)  # now queued, still shown
