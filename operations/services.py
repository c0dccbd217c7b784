"""Bulk operations: the only writers of ``Operation``.

``operation_create`` stores the filter, how many jobs it matches and the highest job id
(jobs created later are not swept in), records the audit entry and, after commit, sends a
q2 task carrying the schema name. ``operation_run_chunk`` handles the next ``CHUNK`` jobs
(by id, after the operation's cursor) under a session advisory lock of that operation (two
workers never run one operation at once), each job in the engine service's own short
transaction, moving the cursor and counters every ``SAVE_EVERY`` jobs: no row lock lives
longer than one job's service call. Jobs that cannot be acted on are skipped with the
service's reason.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_q.tasks import async_task

from audit import services as audit
from audit.services import Actor
from operations import filters
from operations.models import Operation
from orchestration import services as engine
from orchestration.models import MarketplaceJob
from tenants.db import current_schema

logger = logging.getLogger(__name__)

CHUNK = settings.OPERATIONS_CHUNK  # jobs per transaction
TASK_SECONDS = 10.0  # one q2 task runs chunks for this long, then hands back
STALLED_AFTER = timedelta(seconds=30)  # no chunk for this long: the periodic tick re-sends
ACTIVE = (Operation.Status.PENDING, Operation.Status.RUNNING)
NO_LONGER_MATCHED = "no longer matched the filter when its turn came"


class OperationError(ValueError):
    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


def operation_create(*, kind: str, job_filter: dict[str, Any], actor: Actor) -> Operation:
    """Start a bulk operation; returns at once (a worker does the work)."""
    if kind not in Operation.Kind.values:
        raise OperationError(
            f"unknown operation {kind!r}: one of {', '.join(Operation.Kind.values)}", "kind"
        )
    try:
        clean = filters.clean(job_filter)
    except filters.FilterError as exc:
        raise OperationError(exc.message, exc.field) from exc
    schema = current_schema()
    with transaction.atomic():
        max_id = MarketplaceJob.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        total = filters.jobs_matching(clean).filter(pk__lte=max_id).count()
        operation = Operation.objects.create(
            kind=kind, job_filter=clean, max_job_id=max_id, total=total,
            actor=actor.name, door=actor.door, heartbeat_at=timezone.now(),
        )  # fmt: skip
        audit.record(
            actor.name, actor.door, f"jobs.{kind}", [("operation", operation.pk)],
            count=total, details={"filter": clean, "operation": operation.pk},
        )  # fmt: skip
        transaction.on_commit(lambda: operation_enqueue(schema, operation.pk))
    return operation


def operation_enqueue(schema_name: str, operation_id: int) -> None:
    async_task("operations.tasks.run_operation", schema_name, operation_id)


def operation_cancel(*, operation_id: int, actor: Actor) -> Operation:
    """Stop an operation: a pending one at once, a running one before its next chunk."""
    with transaction.atomic():
        operation = Operation.objects.select_for_update().filter(pk=operation_id).first()
        if operation is None:
            raise OperationError(f"operation {operation_id} does not exist")
        if operation.finished:
            raise OperationError(f"operation {operation_id} is {operation.status}: nothing to stop")
        operation.cancel_requested = True
        operation.save(update_fields=["cancel_requested"])
        audit.record(actor.name, actor.door, "operation.cancel", [("operation", operation.pk)])
    return operation


def _reason(message: str) -> str:
    # "job 12 is running: …" → "job is running: …": reasons are counted, not listed per job.
    return re.sub(r"\b(job|batch) \d+ ?", r"\1 ", message).strip()[:200]


def _apply(kind: str, ids: list[int]) -> tuple[int, dict[str, int]]:
    done, reasons = 0, {}
    if kind == Operation.Kind.CANCEL:
        done = engine.jobs_cancel(queryset=MarketplaceJob.objects.filter(pk__in=ids))
        if len(ids) > done:
            reasons["already finished (or already asked to stop)"] = len(ids) - done
        return done, reasons
    service = engine.job_retry if kind == Operation.Kind.RETRY else engine.job_run_now
    for job_id in ids:
        try:
            service(job_id=job_id)
            done += 1
        except engine.JobError as exc:
            reason = _reason(str(exc))
            reasons[reason] = reasons.get(reason, 0) + 1
    return done, reasons


def _finish(operation: Operation, status: str) -> None:
    operation.status = status
    operation.finished_at = timezone.now()
    left = operation.total - operation.processed
    if status == Operation.Status.DONE and left > 0:
        operation.skipped += left
        operation.skipped_reasons[NO_LONGER_MATCHED] = left
        operation.processed = operation.total


# What a chunk writes on the operation row (never ``cancel_requested``: a Stop made while
# the chunk runs must not be overwritten).
_PROGRESS_FIELDS = ["status", "started_at", "finished_at", "heartbeat_at", "cursor", "processed",
                    "total", "succeeded", "skipped", "skipped_reasons"]  # fmt: skip
SAVE_EVERY = 20  # jobs between two progress writes inside a chunk


def operation_run_chunk(*, operation_id: int, chunk: int | None = None) -> bool:
    """Handle the operation's next chunk; True while more remains (see the module).

    One worker at a time per operation: a session advisory lock, taken without waiting (a
    second worker returns at once). No row lock is held across the chunk: each job is acted
    on in the engine service's own transaction, and the cursor and counters move every
    ``SAVE_EVERY`` jobs. After a crash, at most those jobs are visited again; the service
    refuses what was already done (counted as skipped, with its reason)."""
    key = f"operations.operation:{current_schema()}:{operation_id}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [key])
        (locked,) = cursor.fetchone()
    if not locked:
        return False
    try:
        return _run_chunk(operation_id, chunk or CHUNK)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])


def _run_chunk(operation_id: int, chunk: int) -> bool:
    operation = Operation.objects.filter(pk=operation_id, status__in=ACTIVE).first()
    if operation is None:  # finished or gone
        return False
    now = timezone.now()
    operation.heartbeat_at = now
    if operation.cancel_requested:
        _finish(operation, Operation.Status.CANCELLED)
        operation.save(update_fields=_PROGRESS_FIELDS)
        return False
    if operation.status == Operation.Status.PENDING:
        operation.status = Operation.Status.RUNNING
        operation.started_at = now
    ids = list(
        filters.jobs_matching(operation.job_filter)
        .filter(pk__gt=operation.cursor, pk__lte=operation.max_job_id)
        .order_by("pk")
        .values_list("pk", flat=True)[:chunk]
    )
    if not ids:
        _finish(operation, Operation.Status.DONE)
        operation.save(update_fields=_PROGRESS_FIELDS)
        return False
    for start in range(0, len(ids), SAVE_EVERY):
        part = ids[start : start + SAVE_EVERY]
        done, reasons = _apply(operation.kind, part)
        operation.cursor = part[-1]
        operation.processed += len(part)
        operation.total = max(operation.total, operation.processed)
        operation.succeeded += done
        operation.skipped += len(part) - done
        for reason, count in reasons.items():
            operation.skipped_reasons[reason] = operation.skipped_reasons.get(reason, 0) + count
        operation.heartbeat_at = timezone.now()
        operation.save(update_fields=_PROGRESS_FIELDS)
        if Operation.objects.filter(pk=operation_id, cancel_requested=True).exists():
            return True  # the next call ends it (cancelled)
    return True


def operation_run(
    *, operation_id: int, seconds: float = TASK_SECONDS, chunk: int | None = None
) -> bool:
    """Run chunks for about ``seconds``; True if the operation still has work."""
    deadline = time.monotonic() + seconds
    more = True
    while more and time.monotonic() < deadline:
        more = operation_run_chunk(operation_id=operation_id, chunk=chunk)
    return more


def operations_resume_stalled() -> int:
    """Re-send the task of operations whose last chunk is older than ``STALLED_AFTER`` (a
    lost q2 message, a killed worker): the work is in the row, nothing is lost."""
    schema = current_schema()
    stalled = list(
        Operation.objects.filter(
            status__in=ACTIVE, heartbeat_at__lt=timezone.now() - STALLED_AFTER
        ).values_list("pk", flat=True)[:100]
    )
    for pk in stalled:
        Operation.objects.filter(pk=pk, status__in=ACTIVE).update(heartbeat_at=timezone.now())
        operation_enqueue(schema, pk)
    return len(stalled)


# A bulk request over at most this many jobs is carried out in the request …
INLINE_MAX = settings.OPERATIONS_INLINE_MAX
INLINE_SECONDS = 0.6  # … for about this long (then a worker finishes it),
INLINE_CHUNK = 50  # … in small chunks, so the last one does not push the request past 1 s


def operation_start(*, kind: str, job_filter: dict[str, Any], actor: Actor) -> Operation:
    """``operation_create``, then, when few jobs match, their first chunks in the caller's
    request (bounded by ``INLINE_SECONDS``): a bulk action over a handful of jobs is done
    when the page comes back; a large one goes on in a worker, with its progress on its
    page."""
    operation = operation_create(kind=kind, job_filter=job_filter, actor=actor)
    if operation.total <= INLINE_MAX:
        operation_run(operation_id=operation.pk, seconds=INLINE_SECONDS, chunk=INLINE_CHUNK)
        operation.refresh_from_db()
    return operation
