"""Batch counters: a job's move in a batch moves the batch's counters in the same
transaction, under the batch row's lock, so concurrent completions never lose an update
(3 jobs: 0 %, 33 %, 66 %, 100 %). The batch's status is derived from its counters.

Lock order: job rows, then the tenant's queue row, then the batch row (docs/engine.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from orchestration import events
from orchestration.engine import transitions
from orchestration.models import Batch
from orchestration.selectors import batch_progress
from orchestration.states import BATCH_TERMINAL, BatchStatus, JobStatus
from webhooks import outbox

_COUNTER = {
    JobStatus.COMPLETED: "completed_jobs",
    JobStatus.FAILED: "failed_jobs",
    JobStatus.CANCELLED: "cancelled_jobs",
    JobStatus.SKIPPED: "skipped_jobs",
}


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
