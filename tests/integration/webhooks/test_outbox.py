"""The outbox: rows written by the engine's transitions, in their transaction, with the
documented payload; nothing for a tenant without endpoints or for a rolled-back change."""

from __future__ import annotations

import time
import uuid

import pytest
from django.db import transaction

from orchestration.engine.finish import apply_failure_policy
from orchestration.models import Batch, JobRun, MarketplaceJob
from orchestration.services import JobSpec, batch_create, job_create, job_execute_now
from orchestration.states import JOB_CLAIMABLE
from tests.engine_providers import MARKETPLACE, set_faults
from tests.integration.webhooks.conftest import params
from webhooks import delivery, services
from webhooks.models import WebhookDelivery

JOB_KEYS = {"id", "type", "timestamp", "tenant", "status", "run_id", "attempt",
            "idempotency_key", "job", "progress", "outputs"}  # fmt: skip


def _endpoint(url="http://127.0.0.1:9/hooks", **kwargs):
    return services.endpoint_create(url=url, **kwargs).endpoint


def _run_all():
    from orchestration.services import run_available_jobs

    for _ in range(300):
        run_available_jobs()
        if not MarketplaceJob.objects.filter(status__in=JOB_CLAIMABLE).exists():
            return
        time.sleep(0.01)
    raise AssertionError("jobs never came to rest")


def test_no_endpoint_no_row(hooks):
    job = job_create(marketplace=MARKETPLACE, action="three", params=params(hooks))
    assert job_execute_now(job_id=job.pk) == "completed"
    assert not WebhookDelivery.objects.exists()


def test_completed_job_writes_the_documented_event_for_each_subscriber(hooks):
    everything = _endpoint()
    _endpoint(event_types=["job.run.failed"])  # not subscribed to completions
    off = _endpoint(active=False)
    job = job_create(marketplace=MARKETPLACE, action="three", params=params(hooks), sku="SKU-1")
    job_execute_now(job_id=job.pk)
    row = WebhookDelivery.objects.get()
    run = JobRun.objects.get(job=job)
    assert (row.endpoint_id, row.event_type, row.job_id, row.run_id) == (
        everything.pk, "job.run.completed", job.pk, run.pk)  # fmt: skip
    body = row.payload
    assert set(body) == JOB_KEYS
    assert body["id"] == str(row.event_id) and body["type"] == "job.run.completed"
    assert body["tenant"] == "test_alpha" and body["status"] == "completed"
    assert (body["run_id"], body["attempt"], body["idempotency_key"]) == (
        run.pk,
        1,
        f"run-{run.pk}",
    )
    assert body["job"]["id"] == job.pk and body["job"]["marketplace"] == MARKETPLACE
    assert body["job"]["sku"] == "SKU-1" and body["job"]["status"] == "completed"
    assert body["progress"] == {"steps_completed": 3, "steps_total": 3, "percent": 100}
    assert body["outputs"]["step3"]["remote_id"] == f"step3-{job.pk}"
    assert body["timestamp"].endswith("Z")
    assert off.deliveries.count() == 0


def test_failed_run_carries_error_step_and_whether_it_retries(hooks):
    _endpoint()
    set_faults(hooks / "faults.json", {"step2": {"mode": "retryable", "times": 1}})
    job = job_create(marketplace=MARKETPLACE, action="three", params=params(hooks), max_retries=0)
    job_execute_now(job_id=job.pk)  # retryable, but no retry allowed: fails for good
    (row,) = WebhookDelivery.objects.all()
    error = row.payload["error"]
    assert row.event_type == "job.run.failed" and row.payload["status"] == "failed"
    assert error["step"] == "step2" and "HTTP 503" in error["message"]
    assert error["will_retry"] is False and error["kind"] == "retryable"
    assert row.payload["progress"]["steps_completed"] == 1
    assert set(row.payload["outputs"]) == {"step1"}


def test_failure_then_success_keeps_one_event_per_run_in_order(hooks):
    _endpoint()
    set_faults(hooks / "faults.json", {"step1": {"mode": "retryable", "times": 1}})
    job = job_create(marketplace=MARKETPLACE, action="three", params=params(hooks))
    _run_all()
    rows = list(WebhookDelivery.objects.order_by("id"))
    assert [(r.event_type, r.payload["status"]) for r in rows] == [
        ("job.run.failed", "retrying"), ("job.run.completed", "completed")]  # fmt: skip
    first, second = rows
    assert first.payload["error"]["will_retry"] is True and first.payload["error"]["retry_at"]
    assert first.run_id != second.run_id and second.payload["attempt"] == 2
    assert {first.job_id, second.job_id} == {job.pk}


def test_sequential_group_skips_and_batch_events(hooks):
    _endpoint()
    set_faults(hooks / "faults.json", {"only": {"mode": "permanent", "times": 1}})
    spec = JobSpec(marketplace=MARKETPLACE, action="one", params=params(hooks))
    batch = batch_create(name="group", jobs=[spec, spec, spec], mode=Batch.Mode.SEQUENTIAL)
    _run_all()
    batch.refresh_from_db()
    assert batch.status == "partial"
    rows = list(WebhookDelivery.objects.order_by("id"))
    kinds = [r.event_type for r in rows]
    assert kinds == ["job.run.failed", "job.run.skipped", "job.run.skipped", "batch.partial"]
    jobs = list(batch.jobs.order_by("sequence").values_list("pk", flat=True))
    assert [r.job_id for r in rows[1:3]] == jobs[1:]
    skipped = rows[1].payload
    assert skipped["status"] == "skipped" and "earlier job of the group failed" in skipped["reason"]
    assert len({r.event_id for r in rows}) == 4  # one event id per event
    end = rows[3].payload
    assert end["batch"]["id"] == batch.pk and end["batch"]["skipped_jobs"] == 2
    assert end["progress"] == {"done_jobs": 3, "total_jobs": 3, "percent": 100}


def test_batch_completed(hooks):
    _endpoint(event_types=["batch.completed"])
    spec = JobSpec(marketplace=MARKETPLACE, action="one", params=params(hooks))
    batch = batch_create(name="two", jobs=[spec, spec])
    _run_all()
    (row,) = WebhookDelivery.objects.all()
    assert row.event_type == "batch.completed" and row.batch_id == batch.pk
    assert row.payload["batch"]["completed_jobs"] == 2


def test_rolled_back_transition_writes_no_event_and_sends_nothing(hooks, receiver):
    _endpoint(url=receiver.url)
    job = job_create(marketplace=MARKETPLACE, action="one", params=params(hooks))
    from orchestration.engine.claims import claim_next_job

    claim = claim_next_job()
    assert claim is not None and claim.job_id == job.pk
    with pytest.raises(RuntimeError), transaction.atomic():
        apply_failure_policy(job_id=job.pk, run_id=claim.run_id, message="boom", retryable=False,
                             retry_after=None, event_data={})  # fmt: skip
        assert WebhookDelivery.objects.count() == 1  # written inside the transition…
        raise RuntimeError("the transition's transaction rolls back")
    assert WebhookDelivery.objects.count() == 0  # …and gone with it
    stats = delivery.deliver_due(until=time.monotonic() + 5)
    assert stats.sent == 0 and receiver.snapshot() == []


def test_event_ids_are_fresh_per_event_and_shared_by_endpoints(hooks):
    first, second = _endpoint(), _endpoint()
    job = job_create(marketplace=MARKETPLACE, action="one", params=params(hooks))
    job_execute_now(job_id=job.pk)
    rows = list(WebhookDelivery.objects.order_by("endpoint_id"))
    assert [r.endpoint_id for r in rows] == [first.pk, second.pk]
    assert rows[0].event_id == rows[1].event_id and isinstance(rows[0].event_id, uuid.UUID)
