"""Staff controls over scheduling: "run now", pause and resume (per tenant or per resource)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from orchestration import events
from orchestration.engine import marks, slots
from orchestration.engine.claims import resource_policies
from orchestration.engine.moves import jobs_enqueue
from orchestration.models import Batch, MarketplaceJob, ResourcePolicy
from orchestration.services.jobs import JobError, job_retry
from orchestration.states import JOB_CLAIMABLE, JOB_RETRYABLE_BY_STAFF, JobStatus
from tenants.db import current_schema


def job_run_now(*, job_id: int) -> MarketplaceJob:
    """Run a job as soon as its resource is free, ahead of everything else queued for it.

    While the job waits or runs, the other queued jobs of its resource pause (a
    reservation); their order is unchanged. A failed or cancelled job is retried.
    """
    with transaction.atomic():
        job = (
            MarketplaceJob.objects.select_for_update(of=("self",))
            .select_related("batch")
            .get(pk=job_id)
        )
        if job.status in JOB_RETRYABLE_BY_STAFF:
            job_retry(job_id=job_id)
        elif job.status == JobStatus.PENDING:
            if job.batch is not None and job.batch.mode == Batch.Mode.SEQUENTIAL:
                raise JobError(f"job {job_id} waits for the earlier jobs of its sequential group")
            jobs_enqueue(job_ids=[job_id])
        elif job.status not in JOB_CLAIMABLE:
            raise JobError(f"job {job_id} is {job.status}: it cannot be run now")
        MarketplaceJob.objects.filter(pk=job_id).update(direct=True, run_after=timezone.now())
        job.refresh_from_db()
        events.emit(
            "job_status",
            status=job.status,
            job_id=job.pk,
            batch_id=job.batch_id,
            data={"direct": True},
        )
        marks.signal_work_on_commit(current_schema())
    return job


def resource_pause(*, key: str) -> ResourcePolicy:
    """Nothing new starts on this resource in this tenant (running jobs finish)."""
    resource_policies()  # make sure the row exists
    ResourcePolicy.objects.filter(key=key).update(paused=True)
    return ResourcePolicy.objects.get(key=key)


def resource_resume(*, key: str) -> ResourcePolicy:
    resource_policies()
    ResourcePolicy.objects.filter(key=key).update(paused=False)
    marks.signal_work_on_commit(current_schema())
    return ResourcePolicy.objects.get(key=key)


def resource_set_limits(
    *, key: str, concurrency: int, rate_per_minute: int | None
) -> ResourcePolicy:
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    resource_policies()
    ResourcePolicy.objects.filter(key=key).update(
        concurrency=concurrency, rate_per_minute=rate_per_minute
    )
    marks.signal_work_on_commit(current_schema())
    return ResourcePolicy.objects.get(key=key)


def tenant_pause(*, schema_name: str) -> None:
    """Nothing of the tenant starts until resumed (running jobs finish)."""
    marks.set_tenant_paused(schema_name, True)


def tenant_resume(*, schema_name: str) -> None:
    marks.set_tenant_paused(schema_name, False)
    transaction.on_commit(slots.ensure_drains)
