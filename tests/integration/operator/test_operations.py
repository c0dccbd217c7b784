"""Bulk operations: a filter becomes an operation row carried out chunk by chunk (here the
test plays the worker by calling the chunk service; tests/e2e/test_operator_browser.py
runs it on a real cluster), with progress, skips and their reasons, and a stop."""

from __future__ import annotations

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from audit.services import Actor
from operations import filters, services
from operations.models import Operation
from orchestration import services as engine_services
from orchestration.models import MarketplaceJob
from orchestration.states import JobStatus

ADMIN = Actor("staff", "admin")


def engine_batch(engine_helper, n):
    return engine_services.batch_create(name="bulk", jobs=[engine_helper.spec() for _ in range(n)])


def run_to_end(operation: Operation) -> Operation:
    for _ in range(1000):
        if not services.operation_run_chunk(operation_id=operation.pk):
            break
    operation.refresh_from_db()
    return operation


@pytest.mark.parametrize(
    ("kind", "job_filter", "message"),
    [
        ("explode", {}, "unknown operation"),
        ("retry", {"colour": "red"}, "unknown filter key"),
        ("retry", {"status": ["sleeping"]}, "unknown status"),
        ("retry", {"marketplace": "nowhere"}, "unknown marketplace"),
        ("retry", {"batch": "seven"}, "batch: expected an id"),
        ("retry", {"created_after": "yesterday"}, "ISO date"),
        ("retry", {"ids": ["a"]}, "list of job ids"),
        ("retry", "status=failed", "must be an object"),
    ],
)
def test_bad_operations_are_refused(tenant_a, kind, job_filter, message):
    with pytest.raises(services.OperationError, match=message):
        services.operation_create(kind=kind, job_filter=job_filter, actor=ADMIN)
    assert not Operation.objects.exists()
    assert not AuditEntry.objects.exists()


def test_changelist_query_becomes_a_filter():
    assert filters.from_changelist_query("status__exact=failed&q=timeout&o=2&p=3") == {
        "status": ["failed"],
        "q": "timeout",
    }
    with pytest.raises(filters.FilterError, match="cannot be used"):
        filters.from_changelist_query("retry_count__gte=2")


def test_retry_over_a_filter_in_chunks(engine, monkeypatch, django_capture_on_commit_callbacks):
    batch = engine_batch(engine, 7)
    from orchestration.services import batch_cancel

    batch_cancel(batch_id=batch.pk)
    other = engine_batch(engine, 2)  # not matched (still queued, other batch)
    monkeypatch.setattr(services, "CHUNK", 3)
    with django_capture_on_commit_callbacks() as callbacks:
        operation = services.operation_create(
            kind="retry", job_filter={"status": ["cancelled"]}, actor=ADMIN
        )
    assert len(callbacks) == 1  # the worker's task is sent after commit
    assert (operation.status, operation.total, operation.processed) == ("pending", 7, 0)
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.count, entry.targets) == (
        "jobs.retry",
        7,
        [["operation", str(operation.pk)]],
    )
    # Jobs made after the operation are not swept in, even if they match.
    late = engine_batch(engine, 1)
    batch_cancel(batch_id=late.pk)
    progress = []
    while services.operation_run_chunk(operation_id=operation.pk):
        operation.refresh_from_db()
        progress.append(operation.processed)
    operation.refresh_from_db()
    assert progress == [3, 6, 7]
    assert (operation.status, operation.succeeded, operation.skipped) == ("done", 7, 0)
    assert set(MarketplaceJob.objects.filter(batch=batch).values_list("status", flat=True)) == {
        JobStatus.QUEUED
    }
    assert set(MarketplaceJob.objects.filter(batch=other).values_list("status", flat=True)) == {
        JobStatus.QUEUED
    }
    assert MarketplaceJob.objects.get(batch=late).status == JobStatus.CANCELLED


def test_skips_say_why(engine):
    batch = engine_batch(engine, 4)
    ids = list(
        MarketplaceJob.objects.filter(batch=batch).order_by("pk").values_list("pk", flat=True)
    )
    from orchestration.services import job_cancel

    job_cancel(job_id=ids[0])
    operation = services.operation_create(kind="retry", job_filter={"batch": batch.pk}, actor=ADMIN)
    operation = run_to_end(operation)
    assert (operation.succeeded, operation.skipped, operation.processed) == (1, 3, 4)
    assert operation.skipped_reasons == {
        "job is queued: only failed or cancelled jobs can be retried": 3
    }


def test_jobs_that_stop_matching_are_counted_as_skipped(engine):
    batch = engine_batch(engine, 3)
    from orchestration.services import batch_cancel, job_retry

    batch_cancel(batch_id=batch.pk)
    operation = services.operation_create(
        kind="retry", job_filter={"status": ["cancelled"], "batch": batch.pk}, actor=ADMIN
    )
    first = MarketplaceJob.objects.filter(batch=batch).order_by("pk").first()
    assert first is not None
    job_retry(job_id=first.pk)  # someone else retried it meanwhile
    operation = run_to_end(operation)
    assert (operation.processed, operation.total, operation.succeeded) == (3, 3, 2)
    assert operation.skipped_reasons == {services.NO_LONGER_MATCHED: 1}


def test_cancel_operation_and_stop(engine, monkeypatch):
    batch = engine_batch(engine, 5)
    monkeypatch.setattr(services, "CHUNK", 2)
    operation = services.operation_create(
        kind="cancel", job_filter={"batch": batch.pk}, actor=Actor("ops", "command")
    )
    assert services.operation_run_chunk(operation_id=operation.pk)
    services.operation_cancel(operation_id=operation.pk, actor=ADMIN)
    assert not services.operation_run_chunk(operation_id=operation.pk)
    operation.refresh_from_db()
    assert (operation.status, operation.processed, operation.succeeded) == ("cancelled", 2, 2)
    statuses = list(
        MarketplaceJob.objects.filter(batch=batch).order_by("pk").values_list("status", flat=True)
    )
    assert statuses == ["cancelled", "cancelled", "queued", "queued", "queued"]
    with pytest.raises(services.OperationError, match="nothing to stop"):
        services.operation_cancel(operation_id=operation.pk, actor=ADMIN)
    assert [e.action for e in AuditEntry.objects.order_by("id")] == [
        "jobs.cancel",
        "operation.cancel",
    ]


def test_stalled_operations_are_sent_again(engine):
    batch = engine_batch(engine, 1)
    operation = services.operation_create(
        kind="cancel", job_filter={"batch": batch.pk}, actor=ADMIN
    )
    assert services.operations_resume_stalled() == 0
    Operation.objects.filter(pk=operation.pk).update(
        heartbeat_at=timezone.now() - services.STALLED_AFTER * 2
    )
    from django_q.models import OrmQ

    before = OrmQ.objects.count()
    assert services.operations_resume_stalled() == 1
    assert OrmQ.objects.count() == before + 1
    assert services.operations_resume_stalled() == 0  # not again until it stalls again


def test_one_worker_at_a_time_per_operation(tx_tenant_a, tmp_path):
    """While another session runs an operation (holds its advisory lock), a second worker's
    call returns at once and handles nothing; once released, the work goes on."""
    from django.db import connection

    from orchestration.services import batch_cancel as cancel_batch
    from tests.engine_providers import MARKETPLACE
    from tests.helpers import plain_session

    spec = engine_services.JobSpec(marketplace=MARKETPLACE, action="one")
    batch = engine_services.batch_create(name="b", jobs=[spec, spec, spec])
    cancel_batch(batch_id=batch.pk)
    operation = services.operation_create(kind="retry", job_filter={"batch": batch.pk}, actor=ADMIN)
    key = f"operations.operation:{connection.schema_name}:{operation.pk}"
    with plain_session(connection.settings_dict, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
        assert services.operation_run_chunk(operation_id=operation.pk) is False
        operation.refresh_from_db()
        assert (operation.status, operation.processed) == ("pending", 0)
        other.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])
    operation = run_to_end(operation)
    assert (operation.status, operation.succeeded) == ("done", 3)
