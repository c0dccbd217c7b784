"""Job moves the services and the engine both make: enqueue, cancel, and stop the rest of
a sequential group. Each writes the jobs' rows, their live events, their batch counters and
the tenant's queue mark in the caller's transaction.

Lock order: job rows, then the tenant's queue row, then the batch row (docs/engine.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from orchestration import events
from orchestration.engine import marks, transitions
from orchestration.engine.counters import batch_apply_job_moves
from orchestration.models import Batch, MarketplaceJob, MarketplaceTask
from orchestration.states import (
    JOB_ACTIVE,
    JOB_CANCELLABLE_AT_ONCE,
    BatchStatus,
    JobStatus,
    TaskStatus,
)
from tenants.db import current_schema
from webhooks import outbox


def jobs_enqueue(*, job_ids: Sequence[int]) -> int:
    """PENDING (or re-queued) jobs become QUEUED; a worker is signalled after commit."""
    with transaction.atomic():
        moved = transitions.transition_many(
            MarketplaceJob.objects.filter(pk__in=job_ids),
            JobStatus.QUEUED,
            expect=[JobStatus.PENDING],
            run_after=timezone.now(),
        )
        if moved:  # the tenant's queue row before the batch row (docs/engine.md, lock order)
            marks.signal_work_on_commit(current_schema())
        after_moves(moved, JobStatus.QUEUED)
    return len(moved)


def after_moves(moved: list[tuple[int, str]], target: str) -> None:
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


def batch_next_sequential(batch_id: int) -> None:
    """Enqueue the next PENDING job of a sequential group (after one completed).

    Nothing is enqueued while another job of the group is queued or running: a group runs
    one job at a time (staff controls refuse to start a second; this keeps it so).
    """
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
