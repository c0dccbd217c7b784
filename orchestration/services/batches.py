"""Batches: creation, progress, sequential groups, cancel and resume.

Progress counters move in the same transaction as the job transition that causes
them, under the batch row's lock, so concurrent completions never lose an update
(3 jobs → 0 %, 33 %, 66 %, 100 %). The batch status is derived from the counters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from orchestration import events
from orchestration.models import Batch, MarketplaceJob, MarketplaceTask
from orchestration.selectors import batch_progress
from orchestration.services import transitions
from orchestration.states import (
    BATCH_TERMINAL,
    JOB_ACTIVE,
    JOB_TERMINAL,
    BatchStatus,
    JobStatus,
    TaskStatus,
)
from webhooks import outbox

_COUNTER = {
    JobStatus.COMPLETED: "completed_jobs",
    JobStatus.FAILED: "failed_jobs",
    JobStatus.CANCELLED: "cancelled_jobs",
    JobStatus.SKIPPED: "skipped_jobs",
}


@dataclass(frozen=True)
class JobSpec:
    marketplace: str
    action: str
    product_id: int | None = None
    sku: str = ""
    params: dict[str, Any] | None = None
    priority: int = 0
    max_retries: int = 3


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
    from orchestration.services.jobs import job_create_many, jobs_enqueue

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


def _add_to_counters(batch_id: int, delta: dict[str, int]) -> Batch:
    """``UPDATE … SET counter = counter + n … RETURNING *``: lock, add and read in one statement."""
    table = Batch._meta.db_table
    columns = batch_row_columns()
    assignments = ", ".join(f'"{name}" = "{name}" + %s' for name in delta)
    with connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{table}" SET {assignments} WHERE id = %s RETURNING {", ".join(columns)}',
            [*delta.values(), batch_id],
        )
        row = cursor.fetchone()
    return Batch.from_db(connection.alias, columns, row)


def batch_apply_job_moves(batch_id: int, moves: Iterable[tuple[str, str]]) -> Batch | None:
    """Account for jobs of ``batch_id`` moving (old → new status); derive the batch status.

    Must run inside the transaction that moved the jobs. Returns the batch, or None when
    nothing about it changed (a job of an already running batch started).
    """
    delta: Counter[str] = Counter()
    started = False
    for old, new in moves:
        if old in _COUNTER:
            delta[_COUNTER[JobStatus(old)]] -= 1
        if new in _COUNTER:
            delta[_COUNTER[JobStatus(new)]] += 1
        started = started or new == JobStatus.RUNNING
    changes = {k: F(k) + v for k, v in delta.items() if v}
    if not changes and started:
        # A job started and no counter moved (the common claim): only a PENDING batch (or a
        # cancelled one being resumed) changes (a locking read of a running batch matches no
        # row and writes nothing); nothing to announce else.
        now = timezone.now()
        moved = transitions.transition_many(
            Batch.objects.filter(pk=batch_id),
            BatchStatus.RUNNING,
            expect=[BatchStatus.PENDING, BatchStatus.CANCELLED],
            started_at=Coalesce(F("started_at"), now),
            completed_at=None,
        )
        if not moved:
            return None
        batch = Batch.objects.get(pk=batch_id)
        emit_batch_progress(batch)
        return batch
    if changes:
        # The UPDATE takes the row lock: concurrent completions serialise here, none is lost.
        batch = _add_to_counters(batch_id, {k: v for k, v in delta.items() if v})
    else:
        batch = Batch.objects.select_for_update().get(pk=batch_id)
    return batch_counters_moved(batch, started=started)


def batch_counters_moved(batch: Batch, *, started: bool = False) -> Batch:
    """After the batch's counters moved (row locked, values fresh): derive its status and
    announce its progress. For callers that moved the counters in their own statement."""
    _derive_status(batch, started=started)
    emit_batch_progress(batch)
    return batch


def batch_row_columns() -> list[str]:
    """The batch table's columns, in the order ``Batch.from_db`` expects them."""
    return [str(f.column) for f in Batch._meta.concrete_fields]


def _derive_status(batch: Batch, *, started: bool) -> None:
    now = timezone.now()
    if batch.done_jobs >= batch.total_jobs:
        if batch.status == BatchStatus.CANCELLED:
            target = BatchStatus.CANCELLED
        elif batch.completed_jobs == batch.total_jobs:
            target = BatchStatus.COMPLETED
        elif batch.cancelled_jobs == batch.total_jobs:
            target = BatchStatus.CANCELLED
        elif batch.completed_jobs == 0 and batch.skipped_jobs == 0:
            target = BatchStatus.FAILED
        else:
            target = BatchStatus.PARTIAL
        if batch.status != target:
            transitions.transition(Batch, batch.pk, target, completed_at=now)
            batch.status, batch.completed_at = target, now
            if target in (BatchStatus.COMPLETED, BatchStatus.PARTIAL):
                outbox.record_batch_event(f"batch.{target}", batch_id=batch.pk, status=target)
            events.emit(
                "complete", status=target, batch_id=batch.pk, progress=batch_progress(batch)
            )
        return
    if batch.status in BATCH_TERMINAL or (started and batch.status == BatchStatus.PENDING):
        if batch.status == BatchStatus.CANCELLED and not started:
            return  # a cancelled batch stays cancelled while its running jobs wind down
        fields: dict[str, Any] = {"completed_at": None}
        if batch.started_at is None:
            fields["started_at"] = now
            batch.started_at = now
        transitions.transition(Batch, batch.pk, BatchStatus.RUNNING, **fields)
        batch.status, batch.completed_at = BatchStatus.RUNNING, None


def emit_batch_progress(batch: Batch) -> None:
    events.emit(
        "batch_progress", status=batch.status, batch_id=batch.pk, progress=batch_progress(batch)
    )


def batch_next_sequential(batch_id: int) -> None:
    """Enqueue the next PENDING job of a sequential group (after one completed).

    Nothing is enqueued while another job of the group is queued or running: a group runs
    one job at a time (staff controls refuse to start a second; this keeps it so).
    """
    from orchestration.services.jobs import jobs_enqueue

    waiting = MarketplaceJob.objects.filter(batch_id=batch_id)
    if waiting.filter(status__in=JOB_ACTIVE).exists():
        return
    nxt = (
        waiting.filter(status=JobStatus.PENDING)
        .order_by("sequence", "pk")
        .values_list("pk", flat=True)
        .first()
    )
    if nxt is not None:
        jobs_enqueue(job_ids=[nxt])


def batch_skip_later(
    batch_id: int, *, after_sequence: int | None = None, reason: str = "failed"
) -> list[tuple[int, str]]:
    """A job of a sequential group ended without completing (it failed for good or was
    cancelled): the PENDING jobs after it become SKIPPED. Returns (pk, old status).

    Only the job rows: the caller accounts for them in the batch's counters, with the job
    that stopped the group, in one batch update (job rows before the batch row).
    """
    later = MarketplaceJob.objects.filter(batch_id=batch_id, status=JobStatus.PENDING)
    if after_sequence is not None:
        later = later.filter(sequence__gt=after_sequence)
    moved = transitions.transition_many(
        later, JobStatus.SKIPPED, error_message=f"skipped: an earlier job of the group {reason}"
    )
    for pk, old in moved:
        events.emit(
            "job_status", status=JobStatus.SKIPPED, job_id=pk, batch_id=batch_id, data={"from": old}
        )
    outbox.record_job_events(
        "job.run.skipped", job_ids=[pk for pk, _ in moved], status=JobStatus.SKIPPED
    )
    return moved


def batch_skip_rest(batch_id: int) -> int:
    """A job of a sequential group failed for good: the jobs after it become SKIPPED."""
    moved = batch_skip_later(batch_id)
    if moved:
        batch_apply_job_moves(batch_id, [(old, JobStatus.SKIPPED) for _, old in moved])
    return len(moved)


def group_stops(batch_id: int | None) -> bool:
    """Whether a job of this batch ending without completing stops the rest: a sequential
    group, unless the whole batch is being cancelled (its jobs are cancelled instead)."""
    if not batch_id:
        return False
    return (
        Batch.objects.filter(pk=batch_id, mode=Batch.Mode.SEQUENTIAL)
        .exclude(status=BatchStatus.CANCELLED)
        .exists()
    )


def batch_cancel(*, batch_id: int) -> Batch:
    """Cancel every unfinished job: waiting ones at once, running ones at their next step boundary."""
    from orchestration.services.jobs import jobs_cancel

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
    from orchestration.services.jobs import JobError, job_retry

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
