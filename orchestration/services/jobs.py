"""Jobs: create, enqueue, cancel, retry, retry from a step. The doors (admin, CLI, API,
dashboard) call these and nothing else."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from orchestration import events, steps
from orchestration.models import Batch, MarketplaceJob, MarketplaceTask
from orchestration.services import transitions
from orchestration.services.batches import JobSpec, batch_apply_job_moves
from orchestration.states import (
    JOB_CANCELLABLE_AT_ONCE,
    JOB_RETRYABLE_BY_STAFF,
    JobStatus,
    TaskStatus,
)
from tenants.db import current_schema


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
    from marketplaces.models import Product

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


def jobs_enqueue(*, job_ids: Sequence[int]) -> int:
    """PENDING (or re-queued) jobs become QUEUED; a worker is signalled after commit."""
    from orchestration import dispatch

    with transaction.atomic():
        moved = transitions.transition_many(
            MarketplaceJob.objects.filter(pk__in=job_ids),
            JobStatus.QUEUED,
            expect=[JobStatus.PENDING],
            run_after=timezone.now(),
        )
        _after_moves(moved, JobStatus.QUEUED)
        if moved:
            dispatch.signal_work_on_commit(current_schema())
    return len(moved)


def _after_moves(moved: list[tuple[int, str]], target: str) -> None:
    """Events and batch counters for jobs that moved to ``target``."""
    if not moved:
        return
    batch_of = dict(
        MarketplaceJob.objects.filter(pk__in=[pk for pk, _ in moved]).values_list("pk", "batch_id")
    )
    by_batch: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for pk, old in moved:
        events.emit(
            "job_status", status=target, job_id=pk, batch_id=batch_of.get(pk), data={"from": old}
        )
        if batch_of.get(pk):
            by_batch[batch_of[pk]].append((old, target))
    for batch_id, moves in by_batch.items():
        batch_apply_job_moves(batch_id, moves)


def job_cancel(*, job_id: int) -> MarketplaceJob:
    """Cancel a job: at once if it is waiting; at the next step boundary if it is running."""
    with transaction.atomic():
        count = jobs_cancel(queryset=MarketplaceJob.objects.filter(pk=job_id))
        job = MarketplaceJob.objects.get(pk=job_id)
        if count == 0 and job.status != JobStatus.RUNNING:
            raise JobError(f"job {job_id} is {job.status}: there is nothing to cancel")
    return job


def jobs_cancel(*, queryset: QuerySet[MarketplaceJob]) -> int:
    """Bulk cancel (a filter, a batch): returns how many jobs were cancelled or asked to stop."""
    now = timezone.now()
    with transaction.atomic():
        # Every job row before any batch row (``_after_moves`` moves the batches' counters):
        # a worker finishing a job holds its row and then takes its batch's.
        running = queryset.filter(status=JobStatus.RUNNING, cancel_requested=False).update(
            cancel_requested=True
        )
        moved = transitions.transition_many(
            queryset, JobStatus.CANCELLED, expect=JOB_CANCELLABLE_AT_ONCE, completed_at=now,
            error_message="cancelled by staff",
        )  # fmt: skip
        if moved:
            MarketplaceTask.objects.filter(
                job_id__in=[pk for pk, _ in moved],
                status__in=[TaskStatus.PENDING, TaskStatus.FAILED],
            ).update(status=TaskStatus.CANCELLED)
        _after_moves(moved, JobStatus.CANCELLED)
    return len(moved) + running


def job_retry(*, job_id: int) -> MarketplaceJob:
    """Staff retry of a FAILED or CANCELLED job: it resumes at its first task not COMPLETED."""
    with transaction.atomic():
        job = MarketplaceJob.objects.select_for_update().get(pk=job_id)
        if job.status not in JOB_RETRYABLE_BY_STAFF:
            raise JobError(
                f"job {job_id} is {job.status}: only failed or cancelled jobs can be retried"
            )
        MarketplaceTask.objects.filter(
            job_id=job_id, status__in=[TaskStatus.FAILED, TaskStatus.CANCELLED]
        ).update(status=TaskStatus.PENDING, error_message="")
        return _requeue(job)


def job_retry_from_step(*, job_id: int, step_order: int) -> MarketplaceJob:
    """Staff retry that also re-runs completed steps from ``step_order`` on."""
    with transaction.atomic():
        job = MarketplaceJob.objects.select_for_update().get(pk=job_id)
        if job.status not in {*JOB_RETRYABLE_BY_STAFF, JobStatus.COMPLETED}:
            raise JobError(f"job {job_id} is {job.status}: wait until it has finished")
        if not MarketplaceTask.objects.filter(job_id=job_id, step_order=step_order).exists():
            raise JobError(f"job {job_id} has no step {step_order}")
        MarketplaceTask.objects.filter(job_id=job_id, step_order__gte=step_order).exclude(
            status=TaskStatus.PENDING
        ).update(status=TaskStatus.PENDING, error_message="", output=None, reused_existing=False)
        MarketplaceTask.objects.filter(
            job_id=job_id,
            step_order__lt=step_order,
            status__in=[TaskStatus.FAILED, TaskStatus.CANCELLED],
        ).update(status=TaskStatus.PENDING, error_message="")
        return _requeue(job)


def _requeue(job: MarketplaceJob) -> MarketplaceJob:
    from orchestration import dispatch

    old = transitions.transition(
        MarketplaceJob, job.pk, JobStatus.QUEUED,
        retry_count=0, run_after=timezone.now(), cancel_requested=False,
        error_message="", completed_at=None, result=None,
    )  # fmt: skip
    _after_moves([(job.pk, old)], JobStatus.QUEUED)
    dispatch.signal_work_on_commit(current_schema())
    job.refresh_from_db()
    return job
