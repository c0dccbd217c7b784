"""Jobs: create, cancel, retry, retry from a step, change options. The doors (admin, CLI,
API, dashboard) call these and nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from marketplaces.models import Product
from orchestration import events, steps
from orchestration.engine import marks, transitions
from orchestration.engine.moves import after_moves, jobs_cancel, jobs_enqueue
from orchestration.models import Batch, MarketplaceJob, MarketplaceTask
from orchestration.states import JOB_ACTIVE, JOB_RETRYABLE_BY_STAFF, JobStatus, TaskStatus
from tenants.db import current_schema


@dataclass(frozen=True)
class JobSpec:
    marketplace: str
    action: str
    product_id: int | None = None
    sku: str = ""
    params: dict[str, Any] | None = None
    priority: int = 0
    max_retries: int = 3


class JobError(Exception):
    """A request staff made that the job's state does not allow (message says why)."""


def job_create(
    *,
    marketplace: str,
    action: str,
    product_id: int | None = None,
    sku: str = "",
    params: dict | None = None,
    priority: int = 0,
    max_retries: int = 3,
    enqueue: bool = True,
) -> MarketplaceJob:
    """Create one job with its tasks (steps from the marketplace's provider), PENDING;
    enqueue it unless ``enqueue`` is False."""
    spec = JobSpec(marketplace, action, product_id, sku, params, priority, max_retries)
    with transaction.atomic():
        (job,) = job_create_many(specs=[spec])
        if enqueue:
            jobs_enqueue(job_ids=[job.pk])
            job.refresh_from_db()
    return job


def job_create_many(
    *, specs: Sequence[JobSpec], batch: Batch | None = None
) -> list[MarketplaceJob]:
    """Bulk-create jobs and their tasks (two INSERTs whatever the count)."""
    product_ids = {s.product_id for s in specs if s.product_id and not s.sku}
    skus = (
        dict(Product.objects.filter(pk__in=product_ids).values_list("pk", "sku"))
        if product_ids
        else {}
    )
    step_cache: dict[tuple[str, str], list[steps.Step]] = {}
    jobs = []
    for sequence, spec in enumerate(specs, start=1):
        key = (spec.marketplace, spec.action)
        if key not in step_cache:
            step_cache[key] = steps.steps_for(*key)  # UnknownProvider names what exists
        jobs.append(
            MarketplaceJob(
                batch=batch,
                sequence=sequence,
                product_id=spec.product_id,
                sku=spec.sku or (skus.get(spec.product_id, "") if spec.product_id else ""),
                marketplace=spec.marketplace,
                resource_key=steps.get_provider(spec.marketplace).resource.key,
                concurrency_key=steps.concurrency_key(
                    spec.marketplace,
                    product_id=spec.product_id,
                    params=spec.params,
                    sku=spec.sku or (skus.get(spec.product_id, "") if spec.product_id else ""),
                ),
                action=spec.action,
                params=spec.params or {},
                priority=spec.priority,
                max_retries=spec.max_retries,
            )
        )
    MarketplaceJob.objects.bulk_create(jobs)
    MarketplaceTask.objects.bulk_create(
        [
            MarketplaceTask(job=job, step_type=step.step_type, step_order=order)
            for job in jobs
            for order, step in enumerate(step_cache[(job.marketplace, job.action)], start=1)
        ]
    )
    return jobs


def job_cancel(*, job_id: int) -> MarketplaceJob:
    """Cancel a job: at once if it is waiting; at the next step boundary if it is running."""
    with transaction.atomic():
        count = jobs_cancel(queryset=MarketplaceJob.objects.filter(pk=job_id))
        job = MarketplaceJob.objects.get(pk=job_id)
        if count == 0 and job.status != JobStatus.RUNNING:
            raise JobError(f"job {job_id} is {job.status}: there is nothing to cancel")
    return job


def job_retry(*, job_id: int) -> MarketplaceJob:
    """Staff retry of a FAILED or CANCELLED job: it resumes at its first task not COMPLETED.

    Refused (``JobError``) for a job of a sequential group while another job of the group
    is queued or running: a group runs one job at a time.
    """
    with transaction.atomic():
        job = MarketplaceJob.objects.select_for_update().get(pk=job_id)
        if job.status not in JOB_RETRYABLE_BY_STAFF:
            raise JobError(
                f"job {job_id} is {job.status}: only failed or cancelled jobs can be retried"
            )
        _refuse_second_in_group(job)
        transitions.transition_many(
            MarketplaceTask.objects.filter(job_id=job_id),
            TaskStatus.PENDING,
            expect=[TaskStatus.FAILED, TaskStatus.CANCELLED],
            error_message="",
        )
        return _requeue(job)


def job_retry_from_step(*, job_id: int, step_order: int) -> MarketplaceJob:
    """Staff retry that also re-runs completed steps from ``step_order`` on."""
    with transaction.atomic():
        job = MarketplaceJob.objects.select_for_update().get(pk=job_id)
        if job.status not in {*JOB_RETRYABLE_BY_STAFF, JobStatus.COMPLETED}:
            raise JobError(f"job {job_id} is {job.status}: wait until it has finished")
        if not MarketplaceTask.objects.filter(job_id=job_id, step_order=step_order).exists():
            raise JobError(f"job {job_id} has no step {step_order}")
        _refuse_second_in_group(job)
        transitions.transition_many(
            MarketplaceTask.objects.filter(job_id=job_id, step_order__gte=step_order),
            TaskStatus.PENDING,
            expect=[TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED],
            error_message="", output=None, reused_existing=False,
        )  # fmt: skip
        transitions.transition_many(
            MarketplaceTask.objects.filter(job_id=job_id, step_order__lt=step_order),
            TaskStatus.PENDING,
            expect=[TaskStatus.FAILED, TaskStatus.CANCELLED],
            error_message="",
        )
        return _requeue(job)


def _refuse_second_in_group(job: MarketplaceJob) -> None:
    """Raise ``JobError`` if ``job`` belongs to a sequential group another job of which is
    queued or running. The batch row lock (after the job's: the lock order) serialises
    staff retries and resumes of one group, so two of them cannot both see it idle."""
    if job.batch_id is None:
        return
    batch = Batch.objects.select_for_update().only("mode").get(pk=job.batch_id)
    if batch.mode != Batch.Mode.SEQUENTIAL:
        return
    other = (
        MarketplaceJob.objects.filter(batch_id=job.batch_id, status__in=JOB_ACTIVE)
        .exclude(pk=job.pk)
        .values_list("pk", "status")
        .first()
    )
    if other is not None:
        raise JobError(
            f"job {job.pk} waits: job {other[0]} of its sequential group is still {other[1]};"
            " retry it (or resume the group) once the group has stopped"
        )


def job_set_options(
    *, job_id: int, priority: int | None = None, max_retries: int | None = None
) -> MarketplaceJob:
    """Change a job's priority and/or retry budget, and nothing else.

    Writes only those columns (a form saving the whole row would overwrite the status,
    run and cancel flag a worker wrote meanwhile). Takes effect at the next claim, or at
    the next failure for ``max_retries``.
    """
    fields: dict[str, object] = {}
    if priority is not None:
        if not -32768 <= priority <= 32767:
            raise JobError("priority must be between -32768 and 32767")
        fields["priority"] = priority
    if max_retries is not None:
        if not 0 <= max_retries <= 32767:
            raise JobError("max retries must be between 0 and 32767")
        fields["max_retries"] = max_retries
    with transaction.atomic():
        if not MarketplaceJob.objects.filter(pk=job_id).exists():
            raise JobError(f"job {job_id} does not exist")
        if fields:
            MarketplaceJob.objects.filter(pk=job_id).update(**fields, updated_at=timezone.now())
        job = MarketplaceJob.objects.get(pk=job_id)
        if fields:  # a snapshot for live pages (the status is unchanged)
            events.emit("job_status", status=job.status, job_id=job.pk, batch_id=job.batch_id,
                        data=dict(fields))  # fmt: skip
    return job


def _requeue(job: MarketplaceJob) -> MarketplaceJob:
    # ``direct`` off: a staff retry does not inherit an old "run now" reservation
    # (``job_run_now`` sets it again after retrying).
    old = transitions.transition(
        MarketplaceJob, job.pk, JobStatus.QUEUED,
        retry_count=0, run_after=timezone.now(), cancel_requested=False,
        error_message="", completed_at=None, result=None, direct=False,
    )  # fmt: skip
    marks.signal_work_on_commit(current_schema())  # queue row before batch row
    after_moves([(job.pk, old)], JobStatus.QUEUED)
    job.refresh_from_db()
    return job
