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
from orchestration.services.batches import JobSpec, batch_apply_job_moves, batch_skip_later
from orchestration.states import (
    JOB_ACTIVE,
    JOB_CANCELLABLE_AT_ONCE,
    JOB_RETRYABLE_BY_STAFF,
    BatchStatus,
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
        if moved:  # the tenant's queue row before the batch row (docs/engine.md, lock order)
            dispatch.signal_work_on_commit(current_schema())
        _after_moves(moved, JobStatus.QUEUED)
    return len(moved)


def _after_moves(moved: list[tuple[int, str]], target: str) -> None:
    """Events and batch counters for jobs that moved to ``target``."""
    _account([(pk, old, target) for pk, old in moved])


def _account(moves: Sequence[tuple[int, str, str]]) -> None:
    """Events and batch counters for jobs that moved (pk, old, new): one counter update per
    batch, whatever the moves."""
    if not moves:
        return
    batch_of = dict(
        MarketplaceJob.objects.filter(pk__in=[pk for pk, _, _ in moves]).values_list(
            "pk", "batch_id"
        )
    )
    by_batch: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for pk, old, new in moves:
        events.emit(
            "job_status", status=new, job_id=pk, batch_id=batch_of.get(pk), data={"from": old}
        )
        if batch_of.get(pk):
            by_batch[batch_of[pk]].append((old, new))
    for batch_id, batch_moves in by_batch.items():
        batch_apply_job_moves(batch_id, batch_moves)


def job_cancel(*, job_id: int) -> MarketplaceJob:
    """Cancel a job: at once if it is waiting; at the next step boundary if it is running."""
    with transaction.atomic():
        count = jobs_cancel(queryset=MarketplaceJob.objects.filter(pk=job_id))
        job = MarketplaceJob.objects.get(pk=job_id)
        if count == 0 and job.status != JobStatus.RUNNING:
            raise JobError(f"job {job_id} is {job.status}: there is nothing to cancel")
    return job


def jobs_cancel(*, queryset: QuerySet[MarketplaceJob]) -> int:
    """Bulk cancel (a filter, a batch): returns how many jobs were cancelled or asked to stop.

    A cancelled job of a sequential group ends the group like a failure: the jobs after it
    are SKIPPED (unless the whole batch is being cancelled: they are cancelled with it).
    """
    now = timezone.now()
    with transaction.atomic():
        # Lock every job that may still be cancelled (pk order) and decide per row under its
        # lock: a job a worker claims meanwhile is seen RUNNING once the claim commits (and
        # flagged), never missed between two statements. Job rows before the batch rows
        # (``_account`` moves the counters): a worker finishing a job takes them in that order.
        rows = list(
            queryset.filter(status__in=[*JOB_CANCELLABLE_AT_ONCE, JobStatus.RUNNING])
            .select_for_update(of=("self",))
            .order_by("pk")
            .values_list("pk", "status", "cancel_requested")
        )
        running = [
            pk for pk, status, flagged in rows if status == JobStatus.RUNNING and not flagged
        ]
        waiting = [pk for pk, status, _ in rows if status != JobStatus.RUNNING]
        if running:
            MarketplaceJob.objects.filter(pk__in=running).update(cancel_requested=True)
        moved = transitions.transition_many(
            MarketplaceJob.objects.filter(pk__in=waiting), JobStatus.CANCELLED,
            expect=JOB_CANCELLABLE_AT_ONCE, completed_at=now, error_message="cancelled by staff",
            direct=False,
        )  # fmt: skip
        if moved:
            transitions.transition_many(
                MarketplaceTask.objects.filter(job_id__in=[pk for pk, _ in moved]),
                TaskStatus.CANCELLED,
                expect=[TaskStatus.PENDING, TaskStatus.FAILED],
            )
        skipped = _skip_after_cancelled([pk for pk, _ in moved])
        _account([(pk, old, JobStatus.CANCELLED) for pk, old in moved]
                 + [(pk, old, JobStatus.SKIPPED) for pk, old in skipped])  # fmt: skip
    return len(moved) + len(running)


def _skip_after_cancelled(job_ids: list[int]) -> list[tuple[int, str]]:
    """Jobs after a cancelled one in a sequential group (not being cancelled as a whole)
    become SKIPPED: nothing would ever enqueue them. Returns (pk, old status)."""
    if not job_ids:
        return []
    first: dict[int, int] = {}
    for batch_id, sequence in (
        MarketplaceJob.objects.filter(pk__in=job_ids, batch__mode=Batch.Mode.SEQUENTIAL)
        .exclude(batch__status=BatchStatus.CANCELLED)
        .values_list("batch_id", "sequence")
    ):
        first[batch_id] = min(sequence, first.get(batch_id, sequence))
    skipped: list[tuple[int, str]] = []
    for batch_id, sequence in sorted(first.items()):
        skipped += batch_skip_later(batch_id, after_sequence=sequence, reason="was cancelled")
    return skipped


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
    from orchestration import dispatch

    # ``direct`` off: a staff retry does not inherit an old "run now" reservation
    # (``job_run_now`` sets it again after retrying).
    old = transitions.transition(
        MarketplaceJob, job.pk, JobStatus.QUEUED,
        retry_count=0, run_after=timezone.now(), cancel_requested=False,
        error_message="", completed_at=None, result=None, direct=False,
    )  # fmt: skip
    dispatch.signal_work_on_commit(current_schema())  # queue row before batch row
    _after_moves([(job.pk, old)], JobStatus.QUEUED)
    job.refresh_from_db()
    return job
