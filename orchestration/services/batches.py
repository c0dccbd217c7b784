"""Batches: create, cancel and resume. Their counters and status move with their jobs
(``orchestration.engine.counters``)."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from orchestration.engine import transitions
from orchestration.engine.counters import batch_apply_job_moves, emit_batch_progress
from orchestration.engine.moves import batch_next_sequential, jobs_cancel, jobs_enqueue
from orchestration.models import Batch, MarketplaceJob, MarketplaceTask
from orchestration.services.jobs import JobError, JobSpec, job_create_many, job_retry
from orchestration.states import (
    BATCH_TERMINAL,
    JOB_ACTIVE,
    JOB_TERMINAL,
    BatchStatus,
    JobStatus,
    TaskStatus,
)

__all__ = ["JobSpec", "batch_cancel", "batch_create", "batch_resume"]


def batch_create(
    *,
    name: str,
    jobs: Sequence[JobSpec],
    mode: str = Batch.Mode.PARALLEL,
    created_by: str = "",
    start: bool = True,
) -> Batch:
    """Create a batch and its jobs (with their tasks); enqueue them unless ``start`` is False.

    Sequential batches enqueue only their first job; the next one is enqueued when
    the previous completes.
    """
    if not jobs:
        raise ValueError("a batch needs at least one job")
    with transaction.atomic():
        batch = Batch.objects.create(
            name=name, mode=mode, created_by=created_by, total_jobs=len(jobs)
        )
        created = job_create_many(specs=jobs, batch=batch)
        if start:
            first = created[:1] if mode == Batch.Mode.SEQUENTIAL else created
            jobs_enqueue(job_ids=[j.pk for j in first])
        emit_batch_progress(batch)
    return batch


def batch_cancel(*, batch_id: int) -> Batch:
    """Cancel every unfinished job: waiting ones at once, running ones at their next step boundary."""
    with transaction.atomic():
        # Job rows before the batch row, the order a finishing worker takes them in (its job,
        # then the batch's counters): the other way round, the two could deadlock.
        list(
            MarketplaceJob.objects.select_for_update()
            .filter(batch_id=batch_id)
            .exclude(status__in=JOB_TERMINAL)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        batch = Batch.objects.select_for_update().get(pk=batch_id)
        if batch.status not in BATCH_TERMINAL:
            transitions.transition(Batch, batch_id, BatchStatus.CANCELLED)
        jobs_cancel(queryset=MarketplaceJob.objects.filter(batch_id=batch_id))
        batch.refresh_from_db()
        emit_batch_progress(batch)
    return batch


def batch_resume(*, batch_id: int) -> Batch:
    """Re-run a group's failed/cancelled jobs and continue it.

    Sequential: the first failed job is retried and the skipped or cancelled ones wait
    (PENDING, their unfinished tasks PENDING again) to run after it in order; refused
    (``JobError``) while a job of the group is still queued or running, so that a group
    never runs two jobs at once. Parallel: every failed or cancelled job is retried.
    """
    with transaction.atomic():
        # The batch's unfinished job rows, then the batch row (the documented lock order).
        jobs = list(
            MarketplaceJob.objects.select_for_update()
            .filter(batch_id=batch_id)
            .exclude(status=JobStatus.COMPLETED)
            .order_by("pk")
            .values_list("pk", "sequence", "status")
        )
        batch = Batch.objects.select_for_update().get(pk=batch_id)
        in_order = sorted(jobs, key=lambda row: (row[1], row[0]))
        failed = [pk for pk, _, status in in_order
                  if status in (JobStatus.FAILED, JobStatus.CANCELLED)]  # fmt: skip
        if batch.mode == Batch.Mode.SEQUENTIAL:
            active = [(pk, status) for pk, _, status in in_order if status in JOB_ACTIVE]
            if active:
                pk, status = active[0]
                raise JobError(
                    f"batch {batch_id}: job {pk} of this sequential group is still {status};"
                    " resume the group once it has stopped"
                )
            moved = transitions.transition_many(
                MarketplaceJob.objects.filter(
                    batch_id=batch_id, status__in=[JobStatus.SKIPPED, JobStatus.CANCELLED]
                ).exclude(pk__in=failed[:1]),
                JobStatus.PENDING,
                error_message="",
            )
            if moved:
                # Back in line with the tasks they did not complete: a cancelled job's
                # CANCELLED tasks could not be started by the claim (forbidden transition).
                transitions.transition_many(
                    MarketplaceTask.objects.filter(job_id__in=[pk for pk, _ in moved]),
                    TaskStatus.PENDING,
                    expect=[TaskStatus.FAILED, TaskStatus.CANCELLED],
                    error_message="",
                )
                batch_apply_job_moves(batch_id, [(old, JobStatus.PENDING) for _, old in moved])
            to_retry = failed[:1]
            if not to_retry:
                batch_next_sequential(batch_id)
        else:
            to_retry = failed
        for job_id in to_retry:
            job_retry(job_id=job_id)
        batch.refresh_from_db()
    return batch
