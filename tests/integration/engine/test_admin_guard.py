"""The admin never writes engine-owned fields (review defect 1).

A change form saved the whole row (``obj.save()``) from the copy it loaded: status, run,
cancel flag and batch counters that a worker changed meanwhile were overwritten (a batch
stuck RUNNING, a job run twice). The worker's change is made right after the admin loaded
the row, inside the same request, the window a real race hits.
"""

from orchestration.admin import BatchAdmin, MarketplaceJobAdmin
from orchestration.models import Batch, MarketplaceJob
from orchestration.services import (
    batch_create,
    claim_next_job,
    job_create,
    job_execute_now,
    job_set_options,
)
from tests.engine_providers import MARKETPLACE
from tests.helpers import staff_client

JOBS = "/admin/orchestration/marketplacejob/"
BATCHES = "/admin/orchestration/batch/"


def _after_load(monkeypatch, admin_class, worker_change) -> None:
    """Make ``worker_change`` happen right after the admin loads the object."""
    original = admin_class.get_object

    def get_object(self, request, object_id, from_field=None):
        obj = original(self, request, object_id, from_field)
        if request.method == "POST":
            worker_change()
        return obj

    monkeypatch.setattr(admin_class, "get_object", get_object)


def test_saving_the_job_page_changes_priority_only(engine, tenant_a, monkeypatch):
    client = staff_client(tenant_a, "guard-job")
    job = job_create(marketplace=MARKETPLACE, action="three", params=engine.params())
    page = client.get(f"{JOBS}{job.pk}/change/")
    assert page.status_code == 200
    claims = []
    _after_load(monkeypatch, MarketplaceJobAdmin, lambda: claims.append(claim_next_job()))

    response = client.post(
        f"{JOBS}{job.pk}/change/",
        {"priority": "7", "max_retries": "5", "status": "queued", "cancel_requested": "on",
         "_save": "Save"},
    )  # fmt: skip
    assert response.status_code == 302, response.text[:2000]
    job.refresh_from_db()
    assert claims and claims[0].job_id == job.pk
    # The worker's claim stands: still running with its run, not queued again (a second run).
    assert (job.status, job.current_run_id, job.cancel_requested) == (
        "running",
        claims[0].run_id,
        False,
    )
    assert (job.priority, job.max_retries) == (7, 5)


def test_saving_the_batch_page_never_overwrites_its_counters(engine, tenant_a, monkeypatch):
    client = staff_client(tenant_a, "guard-batch")
    batch = batch_create(name="two", jobs=[engine.spec("one") for _ in range(2)])
    first, second = batch.jobs.order_by("pk")
    job_execute_now(job_id=first.pk)
    assert client.get(f"{BATCHES}{batch.pk}/change/").status_code == 200
    _after_load(monkeypatch, BatchAdmin, lambda: job_execute_now(job_id=second.pk))

    client.post(f"{BATCHES}{batch.pk}/change/", {"name": "renamed", "_save": "Save"})
    batch.refresh_from_db()
    assert (batch.completed_jobs, batch.status, batch.name) == (2, "completed", "two")


def test_the_job_and_batch_pages_offer_no_engine_field_to_edit(engine, tenant_a):
    client = staff_client(tenant_a, "guard-fields")
    job = job_create(marketplace=MARKETPLACE, action="one", params=engine.params())
    batch = batch_create(name="b", jobs=[engine.spec("one")])
    job_page = client.get(f"{JOBS}{job.pk}/change/")
    form = job_page.context["adminform"].form
    assert set(form.fields) <= {"priority", "max_retries"}
    batch_page = client.get(f"{BATCHES}{batch.pk}/change/")
    assert set(batch_page.context["adminform"].form.fields) == set()


def test_running_work_cannot_be_deleted_in_the_admin(engine, tenant_a):
    client = staff_client(tenant_a, "guard-delete")
    batch = batch_create(name="two", jobs=[engine.spec("one") for _ in range(2)])
    claim = claim_next_job()
    assert claim is not None

    response = client.post(f"{JOBS}{claim.job_id}/delete/", {"post": "yes"})
    assert response.status_code == 403
    response = client.post(f"{BATCHES}{batch.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    for url, pk in ((JOBS, claim.job_id), (BATCHES, batch.pk)):
        client.post(url, {"action": "delete_selected", "_selected_action": [pk], "post": "yes"})
    assert MarketplaceJob.objects.filter(batch=batch).count() == 2
    assert Batch.objects.filter(pk=batch.pk).exists()
    assert client.get(f"{JOBS}{claim.job_id}/change/").context["has_delete_permission"] is False


def test_finished_work_can_still_be_deleted(engine, tenant_a):
    client = staff_client(tenant_a, "guard-delete-done")
    job = job_create(marketplace=MARKETPLACE, action="one", params=engine.params())
    job_execute_now(job_id=job.pk)
    response = client.post(f"{JOBS}{job.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not MarketplaceJob.objects.filter(pk=job.pk).exists()


def test_job_set_options_writes_only_priority_and_max_retries(engine):
    job = job_create(marketplace=MARKETPLACE, action="one", params=engine.params())
    claim = claim_next_job()
    assert claim is not None
    job_set_options(job_id=job.pk, priority=3)
    job.refresh_from_db()
    assert (job.priority, job.max_retries, job.status, job.current_run_id) == (
        3,
        3,
        "running",
        claim.run_id,
    )


def test_resume_of_a_group_with_a_queued_job_is_refused_with_a_message(engine, tenant_a):
    from orchestration.models import Batch as BatchModel

    client = staff_client(tenant_a, "guard-resume")
    batch = batch_create(name="g", mode=BatchModel.Mode.SEQUENTIAL, jobs=[engine.spec("one")] * 2)
    response = client.post(f"{BATCHES}{batch.pk}/control/resume/", follow=True)
    assert response.status_code == 200
    assert "still queued" in response.text
    assert list(batch.jobs.order_by("sequence").values_list("status", flat=True)) == [
        "queued",
        "pending",
    ]
