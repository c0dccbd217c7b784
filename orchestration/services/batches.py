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
from orchestration.models import Batch, MarketplaceJob
from orchestration.selectors import batch_progress
from orchestration.services import transitions
from orchestration.states import BATCH_TERMINAL, JOB_TERMINAL, BatchStatus, JobStatus

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
        # cancelled one being resumed) changes, in one guarded UPDATE; nothing to announce else.
        now = timezone.now()
        moved = Batch.objects.filter(
            pk=batch_id, status__in=[BatchStatus.PENDING, BatchStatus.CANCELLED]
        ).update(
            status=BatchStatus.RUNNING, started_at=Coalesce(F("started_at"), now), completed_at=None
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
    """Enqueue the next PENDING job of a sequential group (after one completed)."""
    from orchestration.services.jobs import jobs_enqueue

    nxt = (
        MarketplaceJob.objects.filter(batch_id=batch_id, status=JobStatus.PENDING)
        .order_by("sequence", "pk")
        .values_list("pk", flat=True)
        .first()
    )
    if nxt is not None:
        jobs_enqueue(job_ids=[nxt])


def batch_skip_rest(batch_id: int) -> int:
    """A job of a sequential group failed for good: the jobs after it become SKIPPED."""
    moved = transitions.transition_many(
        MarketplaceJob.objects.filter(batch_id=batch_id, status=JobStatus.PENDING),
        JobStatus.SKIPPED,
        error_message="skipped: an earlier job of the group failed",
    )
    for pk, old in moved:
        events.emit(
            "job_status", status=JobStatus.SKIPPED, job_id=pk, batch_id=batch_id, data={"from": old}
        )
    if moved:
        batch_apply_job_moves(batch_id, [(old, JobStatus.SKIPPED) for _, old in moved])
    return len(moved)


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

    Sequential: the first failed job is retried and the skipped ones wait (PENDING)
    to run after it in order. Parallel: every failed or cancelled job is retried.
    """
    from orchestration.services.jobs import job_retry

    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch_id)
        failed = list(
            MarketplaceJob.objects.filter(
                batch_id=batch_id, status__in=[JobStatus.FAILED, JobStatus.CANCELLED]
            )
            .order_by("sequence", "pk")
            .values_list("pk", flat=True)
        )
        if batch.mode == Batch.Mode.SEQUENTIAL:
            moved = transitions.transition_many(
                MarketplaceJob.objects.filter(
                    batch_id=batch_id, status__in=[JobStatus.SKIPPED, JobStatus.CANCELLED]
                ).exclude(pk__in=failed[:1]),
                JobStatus.PENDING,
                error_message="",
            )
            if moved:
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
