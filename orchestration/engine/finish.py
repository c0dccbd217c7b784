"""Ending a run: completed, cancelled at a step boundary, or failed (then the retry policy
decides between a backoff and the end). Each ends the run, moves the job, its batch's
counters and the tenant's running count, and writes the job's webhook outbox rows, in one
transaction.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone
from psycopg.types.json import Jsonb

from orchestration import events, states, steps
from orchestration.engine import marks, transitions
from orchestration.engine.advance import (
    NEXT_START_COLUMNS,
    NEXT_START_CTES,
    NextStart,
    compact_sql,
    emit_task,
    execute_prepared,
    fence,
    fenced_or_forbidden,
    next_start_params,
    sql_list,
)
from orchestration.engine.claims import Claim
from orchestration.engine.counters import (
    batch_apply_job_moves,
    batch_counters_moved,
    batch_row_columns,
)
from orchestration.engine.moves import batch_next_sequential, batch_skip_later, group_stops
from orchestration.engine.retry import backoff_seconds
from orchestration.engine.session import RunFenced
from orchestration.models import Batch, JobRun, MarketplaceJob, MarketplaceTask
from orchestration.states import JobStatus, RunStatus, TaskStatus
from tenants.db import current_schema
from tenants.models import TenantQueue
from webhooks import outbox


def steps_completed_by(run_id: int, job_id: int) -> int:
    """Steps a run completed (kept on the run when it ends; tasks remember their last run).

    Counted among the job's own tasks (``FILTER``, not ``WHERE``): a ``WHERE status =
    'completed'`` lets the planner read the index of every task the tenant ever completed.
    """
    done = Q(last_run_id=run_id, status=TaskStatus.COMPLETED)
    return MarketplaceTask.objects.filter(job_id=job_id).aggregate(n=Count("pk", filter=done))["n"]


def _end_run(claim: Claim, status: str, **fields) -> None:
    transitions.transition(JobRun, claim.run_id, status, finished_at=timezone.now(),
                           steps_completed=steps_completed_by(claim.run_id, claim.job_id),
                           **fields)  # fmt: skip
    marks.runs_finished(current_schema(), 1)


# The job's last step and its end are one commit: the run row's lock is the fence (as in
# ``advance``); ``done`` completes the last task (none when the job had no step left to
# run: ``task_id`` NULL); its snapshot still sees that task RUNNING, hence ``completing``.
# The run's steps are counted among its job's tasks (see ``steps_completed_by``): this plan
# is generic and kept for the connection's life, and one chosen on a small table read the
# index of every completed task of the tenant at each job's end. ``batch`` reads ``queue``
# so that it runs (and locks the tenant's queue row) before the batch row is locked: every
# path takes the queue row before the batch row (deadlocks otherwise, with a job of the
# batch failing in another worker); that condition is always true.
_FINISH_SQL = """
WITH {next_ctes} run AS (
    UPDATE {run} SET status = 'completed', finished_at = %(now)s,
           steps_completed = (SELECT count(*) FILTER (WHERE t.last_run_id = %(run_id)s
                                                        AND t.status = 'completed')
                                FROM {task} AS t WHERE t.job_id = {run}.job_id)
                             + %(completing)s
     WHERE id = %(run_id)s AND status = 'running' {after_next}
 RETURNING job_id),
done AS (
    UPDATE {task} AS t SET status = 'completed', output = %(output)s, reused_existing = %(reused)s,
           completed_at = %(now)s
     WHERE t.id = %(task_id)s AND t.job_id = (SELECT job_id FROM run) AND t.status = 'running'
 RETURNING t.id),
job AS (
    UPDATE {job} AS j SET status = 'completed', completed_at = %(now)s, result = %(result)s,
           error_message = '', direct = false, cancel_requested = false
      FROM run WHERE j.id = run.job_id AND j.status IN ({job_sources})
       AND (%(task_id)s::bigint IS NULL OR EXISTS (SELECT 1 FROM done))
 RETURNING j.id),
{hook},
queue AS (
    UPDATE {queue} SET active_runs = GREATEST(active_runs - 1, 0),
           ready_at = COALESCE(ready_at, now()), signal_seq = signal_seq + 1
     WHERE schema_name = %(schema)s AND EXISTS (SELECT 1 FROM job)
 RETURNING 1),
batch AS (
    UPDATE {batch} SET completed_jobs = completed_jobs + 1
     WHERE id = %(batch_id)s AND EXISTS (SELECT 1 FROM job)
       AND (SELECT count(*) FROM queue) >= 0
 RETURNING {batch_columns})
SELECT (SELECT count(*) FROM run), (SELECT count(*) FROM done), (SELECT count(*) FROM job),
       (SELECT count(*) FROM queue), {next_columns} batch.*
  FROM (SELECT 1) AS one LEFT JOIN batch ON true
"""


def finish_completed(
    claim: Claim,
    outputs: dict,
    last: tuple[MarketplaceTask, dict, bool] | None = None,
    *,
    start_next: NextStart | None = None,
) -> str:
    """The job's last step COMPLETED (``last``: the task, its output, whether the effect
    existed already), run and job COMPLETED, the tenant's running count down and the
    batch's counter up: one fenced statement, one commit. With ``start_next``, the same
    commit starts the next claimed job's first step (``start_next.started`` once committed;
    left unset if that run was fenced or its task may not start, for its own start to tell)."""
    task, output, reused = last if last is not None else (None, None, False)
    if task is not None:
        states.check("task", task.pk, TaskStatus.RUNNING, TaskStatus.COMPLETED)
    now = timezone.now()
    params: dict[str, Any] = {"now": now, "run_id": claim.run_id, "result": Jsonb(outputs),
              "schema": current_schema(), "batch_id": claim.batch_id,
              "task_id": task.pk if task else None, "completing": 1 if task else 0,
              "output": Jsonb(output) if task else None, "reused": reused}  # fmt: skip
    if start_next is not None:
        params.update(next_start_params(start_next, now))
    next_started = next_cancel = False
    with transaction.atomic():
        row = execute_prepared(_finish_sql(start_next is not None), params)
        run_done, task_done, job_done, _queue = row[:4]
        if start_next is not None:
            next_started, next_cancel = bool(row[4]), bool(row[5])
            batch_row = row[6:]
        else:
            batch_row = row[4:]
        if not run_done:
            raise RunFenced(f"run {claim.run_id} of job {claim.job_id} is no longer current")
        if task is not None and not task_done:  # the atomic block rolls the run's update back
            fenced_or_forbidden(claim, run_done, task, TaskStatus.COMPLETED)
        if not job_done:  # the atomic block rolls the run's update back
            current = (
                MarketplaceJob.objects.filter(pk=claim.job_id)
                .values_list("status", flat=True)
                .first()
            )
            raise states.ForbiddenTransition("job", claim.job_id, str(current), JobStatus.COMPLETED)
        batch_id = claim.batch_id
        if task is not None:
            emit_task(claim, task, TaskStatus.COMPLETED, reused=reused)
        events.emit("run_completed", status=RunStatus.COMPLETED, job_id=claim.job_id,
                    run_id=claim.run_id, batch_id=batch_id)  # fmt: skip
        events.emit("job_status", status=JobStatus.COMPLETED, job_id=claim.job_id,
                    run_id=claim.run_id, batch_id=batch_id, data={"from": JobStatus.RUNNING})  # fmt: skip
        if batch_id and batch_row[0] is not None:  # (None: the batch was deleted meanwhile)
            batch = Batch.from_db(connection.alias, batch_row_columns(), batch_row)
            batch_counters_moved(batch)
            if batch.mode == Batch.Mode.SEQUENTIAL:
                batch_next_sequential(batch_id)
        if start_next is not None and next_started:
            emit_task(start_next.claim, start_next.task, TaskStatus.RUNNING)
    if start_next is not None:  # committed
        start_next.started, start_next.cancel = next_started, next_cancel
    return JobStatus.COMPLETED


@functools.cache
def _finish_sql(with_next_start: bool = False) -> str:
    tables = {"run": JobRun._meta.db_table, "job": MarketplaceJob._meta.db_table,
              "task": MarketplaceTask._meta.db_table,
              "task_sources": sql_list(states.sources("task", TaskStatus.RUNNING))}  # fmt: skip
    return compact_sql(_FINISH_SQL.format(
        **tables, batch=Batch._meta.db_table,
        queue=f"public.{TenantQueue._meta.db_table}",
        batch_columns=", ".join(batch_row_columns()),
        job_sources=sql_list(states.sources("job", JobStatus.COMPLETED)),
        hook=outbox.completed_cte("job"),  # the job.run.completed webhook rows, if any
        next_ctes=NEXT_START_CTES.format(**tables) if with_next_start else "",
        after_next="AND (SELECT count(*) FROM next_started) >= 0" if with_next_start else "",
        next_columns=NEXT_START_COLUMNS.format(**tables) if with_next_start else "",
    ))  # fmt: skip


def finish_cancelled(claim: Claim) -> str:
    """The job stopped at a step boundary on a cancel request: run and job CANCELLED, the
    tasks it did not complete CANCELLED; in a sequential group the jobs after it SKIPPED."""
    now = timezone.now()
    with transaction.atomic():
        fence(claim)
        _end_run(claim, RunStatus.CANCELLED, error_kind=JobRun.ErrorKind.CANCELLED,
                 error_message="cancelled by staff")  # fmt: skip
        transitions.transition_many(
            MarketplaceTask.objects.filter(job_id=claim.job_id),
            TaskStatus.CANCELLED,
            expect=[TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.FAILED],
            completed_at=now,
        )
        old = transitions.transition(
            MarketplaceJob, claim.job_id, JobStatus.CANCELLED, completed_at=now,
            cancel_requested=False, error_message="cancelled by staff", direct=False,
        )  # fmt: skip
        batch_id, sequence = (
            MarketplaceJob.objects.filter(pk=claim.job_id).values_list("batch_id", "sequence").get()
        )
        events.emit("job_status", status=JobStatus.CANCELLED, job_id=claim.job_id, run_id=claim.run_id,
                    batch_id=batch_id, data={"from": old})  # fmt: skip
        if batch_id:
            moves = [(old, JobStatus.CANCELLED)]
            if group_stops(batch_id):  # nothing would ever enqueue the jobs after it
                skipped = batch_skip_later(
                    batch_id, after_sequence=sequence, reason="was cancelled"
                )
                moves += [(was, JobStatus.SKIPPED) for _, was in skipped]
            batch_apply_job_moves(batch_id, moves)  # later job rows before the batch row
    return JobStatus.CANCELLED


def finish_failed(
    claim: Claim,
    task: MarketplaceTask | None,
    err: steps.StepError,
    *,
    tb: str,
    internal: bool = False,
) -> str:
    kind = (
        JobRun.ErrorKind.INTERNAL if internal
        else JobRun.ErrorKind.TIMEOUT if isinstance(err, steps.StepTimeout)
        else JobRun.ErrorKind.RETRYABLE if err.retryable
        else JobRun.ErrorKind.PERMANENT
    )  # fmt: skip
    step_name = task.step_type if task else ""
    message = (
        f"{step_name}: {err.message}" if step_name and step_name not in err.message else err.message
    )
    with transaction.atomic():
        fence(claim)
        if task is not None:
            transitions.transition(
                MarketplaceTask, task.pk, TaskStatus.FAILED,
                error_message=err.message, completed_at=timezone.now(),
            )  # fmt: skip
        _end_run(claim, RunStatus.FAILED, error_kind=kind, error_message=message,
                 traceback=tb, failed_step=step_name)  # fmt: skip
        return apply_failure_policy(
            job_id=claim.job_id, run_id=claim.run_id, message=message,
            retryable=err.retryable, retry_after=getattr(err, "retry_after", None),
            event_data={"step": step_name, "kind": kind},
        )  # fmt: skip


def apply_failure_policy(
    *,
    job_id: int,
    run_id: int,
    message: str,
    retryable: bool,
    retry_after: float | None,
    event_data: dict,
) -> str:
    """After a failed run: schedule a retry (backoff) or fail the job for good.

    Shared by the runner and the recovery sweep ("worker lost"); runs in their transaction.
    """
    # Under the job's row lock: a cancel request committed before it is seen here, and one
    # made after waits for this transaction and finds the job RETRYING (cancelled at once).
    # Read without the lock, a job could end RETRYING with ``cancel_requested`` set, which
    # no claim ever takes again.
    job = (
        MarketplaceJob.objects.select_for_update(of=("self",))
        .select_related("batch")
        .get(pk=job_id)
    )
    now = timezone.now()
    events.emit("run_failed", status=RunStatus.FAILED, job_id=job_id, run_id=run_id,
                batch_id=job.batch_id, error=message, data=event_data)  # fmt: skip
    if retryable and job.retry_count < job.max_retries and not job.cancel_requested:
        # A "run now" job keeps its reservation (``direct``) while it waits for its retry.
        delay = backoff_seconds(job.retry_count + 1, retry_after=retry_after)
        run_after = now + timedelta(seconds=delay)
        old = transitions.transition(
            MarketplaceJob, job_id, JobStatus.RETRYING,
            retry_count=F("retry_count") + 1, run_after=run_after, error_message=message,
        )  # fmt: skip
        marks.wake_at(current_schema(), run_after)
        outbox.record_job_events("job.run.failed", job_ids=[job_id], status=JobStatus.RETRYING,
                                 run_id=run_id, will_retry=True, retry_at=run_after)  # fmt: skip
        events.emit("job_status", status=JobStatus.RETRYING, job_id=job_id, run_id=run_id,
                    batch_id=job.batch_id, error=message,
                    data={"from": old, "retry_in": round(delay, 3), "retry": job.retry_count + 1})  # fmt: skip
        return JobStatus.RETRYING
    target = JobStatus.CANCELLED if job.cancel_requested else JobStatus.FAILED
    old = transitions.transition(
        MarketplaceJob, job_id, target, completed_at=now, error_message=message,
        cancel_requested=False, direct=False,
    )  # fmt: skip
    transitions.transition_many(
        MarketplaceTask.objects.filter(job_id=job_id),
        TaskStatus.FAILED,
        expect=[TaskStatus.RUNNING],
        error_message=message,
        completed_at=now,
    )
    outbox.record_job_events("job.run.failed", job_ids=[job_id], status=target, run_id=run_id,
                             will_retry=False)  # fmt: skip
    events.emit("job_status", status=target, job_id=job_id, run_id=run_id, batch_id=job.batch_id,
                error=message, data={"from": old})  # fmt: skip
    if job.batch_id:
        moves = [(old, target)]
        if job.batch is not None and job.batch.mode == Batch.Mode.SEQUENTIAL:
            reason = "was cancelled" if target == JobStatus.CANCELLED else "failed"
            skipped = batch_skip_later(job.batch_id, after_sequence=job.sequence, reason=reason)
            moves += [(was, JobStatus.SKIPPED) for _, was in skipped]
        batch_apply_job_moves(job.batch_id, moves)  # later job rows before the batch row
    return target
