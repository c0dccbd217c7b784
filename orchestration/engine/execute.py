"""Claim a job and run its tasks: one task = one transaction, every write fenced by the run.

Fencing: each write a worker makes for a run first locks that run's row and checks
it is still RUNNING and still the job's current run. The recovery sweep takes the
same lock to declare a run lost, so a stale worker that wakes up after its run was
recovered finds it FAILED and writes nothing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from django.db import connection, transaction
from django.db.models import F, Max
from django.utils import timezone
from psycopg.types.json import Jsonb

from orchestration import conf, dispatch, events, states, steps
from orchestration.dispatch import DATABASE_LOST
from orchestration.models import Batch, JobRun, MarketplaceJob, MarketplaceTask
from orchestration.services import claims, transitions
from orchestration.services.batches import (
    batch_apply_job_moves,
    batch_counters_moved,
    batch_next_sequential,
    batch_row_columns,
    batch_skip_later,
    group_stops,
)
from orchestration.services.executor import StepExecutor
from orchestration.services.retry import backoff_seconds
from orchestration.states import JOB_CLAIMABLE, JobStatus, RunStatus, TaskStatus
from tenants.db import current_schema
from webhooks import outbox

logger = logging.getLogger(__name__)


class RunFenced(Exception):
    """This worker's run is no longer current (recovered or cancelled elsewhere)."""


class DatabaseLost(Exception):
    """The connection went away while claimed jobs were running; ``left`` are the claims
    not finished (the one interrupted first): the caller hands them back once it can."""

    def __init__(self, left: list[Claim], cause: BaseException):
        super().__init__(f"database connection lost with {len(left)} claimed job(s) left: {cause}")
        self.left = left


@dataclass(frozen=True)
class Claim:
    job_id: int
    run_id: int
    attempt: int
    batch_id: int | None = None
    # Loaded with the claim (one query for all jobs claimed together); reloaded if absent.
    job: MarketplaceJob | None = field(default=None, compare=False, repr=False)
    tasks: list[MarketplaceTask] | None = field(default=None, compare=False, repr=False)


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_next_job(*, worker: str | None = None) -> Claim | None:
    """Claim the job of the current tenant that may start now (see services.claims), or None."""
    claimed = claim_jobs(limit=1, worker=worker)
    return claimed[0] if claimed else None


def claim_jobs(*, limit: int, worker: str | None = None) -> list[Claim]:
    """Claim up to ``limit`` jobs of the current tenant in one transaction (in claim order).

    ``FOR UPDATE SKIP LOCKED``: concurrent workers never claim the same job. Claiming a few
    at once spreads the claim's fixed cost (resource rooms, locks) over several jobs; they
    count against their resource's limit from now on, and each run's ``started_at`` is reset
    when its first step really starts.
    """
    now = timezone.now()
    if dispatch.tenant_paused(current_schema()):
        return []
    with transaction.atomic():
        jobs = claims.select_jobs_to_claim(now=now, limit=limit)
        if not jobs:
            return []
        return _start_runs(jobs, worker=worker or _worker_id(), now=now)


_START_JOBS = """
UPDATE {job} AS j SET status = 'running', current_run_id = v.run_id,
       started_at = COALESCE(j.started_at, %s)
  FROM (SELECT unnest(%s::bigint[]) AS job_id, unnest(%s::bigint[]) AS run_id) AS v
 WHERE j.id = v.job_id AND j.status = ANY(%s)
"""


def _start_runs(jobs: list[MarketplaceJob], *, worker: str, now) -> list[Claim]:
    ids = [job.pk for job in jobs]
    last = dict(
        JobRun.objects.filter(job_id__in=ids)
        .values("job_id")
        .annotate(n=Max("attempt"))
        .values_list("job_id", "n")
    )
    lease = now + timedelta(seconds=conf.get("LEASE_SECONDS"))
    runs = JobRun.objects.bulk_create(
        JobRun(job_id=job.pk, attempt=last.get(job.pk, 0) + 1, retry_of_id=job.current_run_id,
               worker=worker, started_at=now, heartbeat_at=now, lease_expires_at=lease,
               resource_key=job.resource_key)
        for job in jobs
    )  # fmt: skip
    for job in jobs:  # the rows are locked by the claim; the table must allow the move
        states.check("job", job.pk, job.status, JobStatus.RUNNING)
    with connection.cursor() as cursor:
        cursor.execute(
            _START_JOBS.format(job=MarketplaceJob._meta.db_table),
            [now, ids, [run.pk for run in runs], sorted(JOB_CLAIMABLE)],
        )
        if cursor.rowcount != len(ids):  # a second line behind the claim's row locks
            raise states.ForbiddenTransition("job", ids, "not claimable", JobStatus.RUNNING)
    dispatch.runs_started(current_schema(), len(jobs))
    tasks_of: dict[int, list[MarketplaceTask]] = {job_id: [] for job_id in ids}
    for task in MarketplaceTask.objects.filter(job_id__in=ids).order_by("job_id", "step_order"):
        tasks_of[task.job_id].append(task)
    started_batches: set[int] = set()
    result = []
    for job, run in zip(jobs, runs, strict=True):
        events.emit("job_status", status=JobStatus.RUNNING, job_id=job.pk, run_id=run.pk,
                    batch_id=job.batch_id, data={"from": job.status, "attempt": run.attempt})  # fmt: skip
        events.emit("run_started", status=RunStatus.RUNNING, job_id=job.pk, run_id=run.pk,
                    batch_id=job.batch_id, data={"attempt": run.attempt, "worker": worker})  # fmt: skip
        if job.batch_id and job.batch_id not in started_batches:
            started_batches.add(job.batch_id)
            batch_apply_job_moves(job.batch_id, [(job.status, JobStatus.RUNNING)])
        result.append(Claim(job.pk, run.pk, run.attempt, job.batch_id, job, tasks_of[job.pk]))
    return result


def _fence(claim: Claim) -> None:
    """Lock the run row; raise RunFenced unless it is still this worker's live run."""
    alive = (
        JobRun.objects.select_for_update()
        .filter(pk=claim.run_id, status=RunStatus.RUNNING, job__current_run_id=claim.run_id)
        .values_list("pk", flat=True)
        .first()
    )
    if alive is None:
        raise RunFenced(f"run {claim.run_id} of job {claim.job_id} is no longer current")


def heartbeat(claim: Claim) -> bool:
    """Renew the lease; False (and nothing written) if the run was fenced."""
    return bool(renew_leases([claim.run_id]))


def execute_claims(
    claimed: list[Claim], *, executor: StepExecutor, deadline: float | None = None
) -> tuple[int, list[Claim]]:
    """Run claimed jobs one after the other; returns (how many ran, the claims not started).

    The later ones' leases are renewed meanwhile (inside a long job by its heartbeat,
    between jobs every ``HEARTBEAT_SECONDS``). None starts after ``deadline`` (monotonic):
    those are returned for the caller to hand back unclaimed, so a drain never overruns
    django-q2's timeout because its marketplace got slow. An unexpected exception in one
    job fails that run as an internal error and the others go on; a lost database
    connection raises ``DatabaseLost`` with the claims left.
    """
    renewed = time.monotonic()
    for index, claim in enumerate(claimed):
        if deadline is not None and time.monotonic() >= deadline:
            return index, claimed[index:]
        waiting = [c.run_id for c in claimed[index + 1 :]]
        try:
            if waiting and time.monotonic() - renewed >= conf.get("HEARTBEAT_SECONDS"):
                renew_leases([claim.run_id, *waiting])
                renewed = time.monotonic()
            execute_claim(claim, executor=executor, waiting=waiting)
        except DATABASE_LOST as exc:
            raise DatabaseLost(claimed[index:], exc) from exc
        except Exception as exc:
            logger.exception("job %s (run %s) raised in the engine", claim.job_id, claim.run_id)
            try:
                _fail_internal(claim, exc)
            except DATABASE_LOST as lost:
                raise DatabaseLost(claimed[index:], lost) from lost
    return len(claimed), []


def _fail_internal(claim: Claim, exc: Exception) -> None:
    """The engine itself raised while running a claim: fail that run for good with the
    traceback (staff can retry it), rather than lose the drain and every claim after it."""
    err = steps.PermanentStepError(f"internal error: {type(exc).__name__}: {exc}")
    try:
        _finish_failed(claim, None, err, tb=traceback.format_exc(), internal=True)
    except DATABASE_LOST:
        raise
    except (RunFenced, states.ForbiddenTransition):
        # Already ended elsewhere (recovered, cancelled): nothing left to record.
        logger.info("run %s had already ended; its internal error is only logged", claim.run_id)
    except Exception:
        # Left RUNNING: its lease expires and the recovery sweep applies the retry policy.
        logger.exception("could not record the internal error of run %s", claim.run_id)


def renew_leases(run_ids: list[int]) -> int:
    """Renew the leases of runs that are still RUNNING (claimed, waiting for their turn)."""
    if not run_ids:
        return 0
    now = timezone.now()
    return JobRun.objects.filter(pk__in=run_ids, status=RunStatus.RUNNING).update(
        heartbeat_at=now, lease_expires_at=now + timedelta(seconds=conf.get("LEASE_SECONDS"))
    )


def execute_claim(
    claim: Claim, *, executor: StepExecutor | None = None, waiting: list[int] | None = None
) -> str:
    """Run the claimed job's remaining tasks in order; returns the job's final status here.

    ``waiting``: runs claimed with this one that start after it; their leases are renewed
    with this run's (a long job must not get them declared lost before they start).
    """
    if executor is None:
        executor = StepExecutor()
        try:
            return execute_claim(claim, executor=executor, waiting=waiting)
        finally:
            executor.close()
    schema = current_schema()
    job = claim.job or MarketplaceJob.objects.get(pk=claim.job_id)
    tasks = claim.tasks if claim.tasks is not None else list(job.tasks.order_by("step_order"))
    outputs = {t.step_type: t.output or {} for t in tasks if t.status == TaskStatus.COMPLETED}
    try:
        provided = {s.step_type: s for s in steps.steps_for(job.marketplace, job.action)}
    except steps.UnknownProvider as exc:
        return _finish_failed(claim, None, steps.PermanentStepError(str(exc)), tb="")
    cancelled = threading.Event()
    last_beat = [time.monotonic()]

    def on_tick() -> None:
        try:
            if time.monotonic() - last_beat[0] >= conf.get("HEARTBEAT_SECONDS"):
                last_beat[0] = time.monotonic()
                renew_leases(waiting or [])
                if not heartbeat(claim):
                    cancelled.set()  # fenced: make a cooperative step stop early
                dispatch.drain_heartbeat()
            if MarketplaceJob.objects.filter(pk=claim.job_id, cancel_requested=True).exists():
                cancelled.set()
        except DATABASE_LOST as exc:
            # Let the step finish rather than abandon it mid-call: the loss surfaces at the
            # step boundary's commit, when no step of this worker is in flight.
            logger.warning("lease renewal of run %s failed: %s", claim.run_id, exc)
            with contextlib.suppress(Exception):
                connection.close()

    pending = [t for t in tasks if t.status != TaskStatus.COMPLETED]
    try:
        # The first remaining task starts on its own; after that, each commit records one
        # step's outcome and starts the next (one statement, one commit per step).
        cancel = _task_start(claim, pending[0], outputs, first_write=True) if pending else False
        for index, task in enumerate(pending):
            if cancel or cancelled.is_set():
                return _finish_cancelled(claim)
            step = provided.get(task.step_type)
            if step is None:
                err = steps.PermanentStepError(
                    f"step {task.step_type!r} is no longer provided for {job.marketplace}.{job.action}"
                )
                return _finish_failed(claim, task, err, tb="")
            ctx = steps.StepContext(
                schema_name=schema, job_id=job.pk, marketplace=job.marketplace, action=job.action,
                product_id=job.product_id, params=job.params, step_type=task.step_type,
                step_order=task.step_order, attempt=claim.attempt,
                timeout=float(getattr(step, "timeout", conf.get("DEFAULT_STEP_TIMEOUT"))),
                outputs=dict(outputs), _is_cancelled=cancelled.is_set,
            )  # fmt: skip
            try:
                output, reused = executor.run(step, ctx, on_tick=on_tick)
            except steps.StepCancelled:
                return _finish_cancelled(claim)
            except steps.StepError as exc:
                return _finish_failed(claim, task, exc, tb=traceback.format_exc())
            except Exception as exc:  # a bug in a step: fail for good, keep the traceback
                err = steps.PermanentStepError(f"{type(exc).__name__}: {exc}")
                return _finish_failed(claim, task, err, tb=traceback.format_exc(), internal=True)
            outputs[task.step_type] = dict(output)
            nxt = pending[index + 1] if index + 1 < len(pending) else None
            renew = time.monotonic() - last_beat[0] >= conf.get("HEARTBEAT_SECONDS")
            if renew:
                last_beat[0] = time.monotonic()
                renew_leases(waiting or [])
            cancel = _task_advance(claim, task, dict(output), reused, nxt, outputs, renew=renew)
        return _finish_completed(claim, outputs)
    except RunFenced:
        logger.warning(
            "run %s of job %s was fenced; stopping without writing", claim.run_id, claim.job_id
        )
        return "fenced"


# Every write of a running job is one statement. Its first CTE locks the run row: that is
# the fence (recovery takes the same lock to declare a run lost, and PostgreSQL re-checks
# ``status = 'running'`` after waiting for it). When the lease is due for renewal (and at
# the run's first write) the lock is an update that renews it; otherwise a row lock alone,
# which writes no new row version (the run's indexes are left alone). Then the tasks'
# guarded transitions; the result hands back the job's cancel flag, so the step boundary
# needs no extra query.
_RUN_RENEW_CTE = """
run AS (
    UPDATE {run} SET heartbeat_at = %(now)s, lease_expires_at = %(lease)s,
           started_at = CASE WHEN %(first_write)s THEN %(now)s ELSE started_at END
     WHERE id = %(run_id)s AND status = 'running'
 RETURNING job_id)"""

_RUN_LOCK_CTE = """
run AS (
    SELECT job_id FROM {run} WHERE id = %(run_id)s AND status = 'running' FOR NO KEY UPDATE)"""

_START_SQL = (
    "WITH"
    + _RUN_RENEW_CTE
    + """,
started AS (
    UPDATE {task} AS t SET status = 'running', input = %(input)s, started_at = %(now)s,
           completed_at = NULL, error_message = '', attempts = t.attempts + 1, last_run_id = %(run_id)s
      FROM run WHERE t.id = %(next_id)s AND t.job_id = run.job_id AND t.status IN ({task_sources})
 RETURNING t.job_id)
SELECT (SELECT count(*) FROM run), (SELECT count(*) FROM started),
       (SELECT cancel_requested FROM {job} WHERE id = (SELECT job_id FROM run))
"""
)

_ADVANCE_BODY = """,
done AS (
    UPDATE {task} AS t SET status = 'completed', output = %(output)s, reused_existing = %(reused)s,
           completed_at = %(now)s
      FROM run WHERE t.id = %(task_id)s AND t.job_id = run.job_id AND t.status = 'running'
 RETURNING t.job_id),
flag AS (SELECT cancel_requested FROM {job} WHERE id = (SELECT job_id FROM done)),
started AS (
    UPDATE {task} AS t SET status = 'running', input = %(input)s, started_at = %(now)s,
           completed_at = NULL, error_message = '', attempts = t.attempts + 1, last_run_id = %(run_id)s
      FROM done WHERE t.id = %(next_id)s AND t.job_id = done.job_id AND t.status IN ({task_sources})
       AND NOT (SELECT cancel_requested FROM flag)
 RETURNING t.id)
SELECT (SELECT count(*) FROM run), (SELECT count(*) FROM done),
       COALESCE((SELECT cancel_requested FROM flag), false), (SELECT count(*) FROM started)
"""
_ADVANCE_RENEW_SQL = "WITH" + _RUN_RENEW_CTE + _ADVANCE_BODY
_ADVANCE_SQL = "WITH" + _RUN_LOCK_CTE + _ADVANCE_BODY


_EXPLICIT_PREPARE_ONLY = 2**31 - 1


def _execute_prepared(sql: str, params: dict[str, Any]) -> tuple:
    """Run one of the hot statements as a server-side prepared statement; return its row.

    Django's cursors bind parameters client-side, so PostgreSQL would plan these CTEs on
    every step; a psycopg cursor with server-side binding on the same connection (same
    transaction, same tenant search_path, set by Django's cursor first) plans them once.
    """
    with connection.cursor():  # connects and applies the tenant's search_path if needed
        pass
    raw = connection.connection
    assert raw is not None
    if raw.prepare_threshold is None:
        # Django turns psycopg's statement preparation off (``prepare_threshold=None``), which
        # also ignores ``prepare=True``. A threshold nothing reaches prepares only these.
        raw.prepare_threshold = _EXPLICIT_PREPARE_ONLY
    with psycopg.Cursor(raw) as cursor:
        cursor.execute(sql, params, prepare=True)
        row = cursor.fetchone()
    assert row is not None
    return tuple(row)


@functools.cache
def _sql(template: str) -> str:
    return template.format(
        run=JobRun._meta.db_table,
        task=MarketplaceTask._meta.db_table,
        job=MarketplaceJob._meta.db_table,
        task_sources=_sql_list(states.sources("task", TaskStatus.RUNNING)),
    )


def _sql_list(statuses) -> str:
    """Status names as SQL literals (they come from the code's state tables, never input)."""
    for status in statuses:
        if not status.replace("_", "").isalpha():
            raise ValueError(f"unexpected status name {status!r}")
    return ", ".join(f"'{status}'" for status in sorted(statuses))


def _run_cte_params(claim: Claim, *, first_write: bool) -> dict[str, Any]:
    # Timestamps come from the application's clock, like every other timestamp of the engine.
    now = timezone.now()
    lease = now + timedelta(seconds=conf.get("LEASE_SECONDS"))
    return {"now": now, "lease": lease, "first_write": first_write,
            "run_id": claim.run_id}  # fmt: skip


def _fenced_or_forbidden(claim: Claim, run_alive: int, task: MarketplaceTask, target: str) -> None:
    if not run_alive:
        raise RunFenced(f"run {claim.run_id} of job {claim.job_id} is no longer current")
    current = MarketplaceTask.objects.filter(pk=task.pk).values_list("status", flat=True).first()
    raise states.ForbiddenTransition("task", task.pk, str(current), target)


def _task_start(claim: Claim, task: MarketplaceTask, outputs: dict, *, first_write: bool) -> bool:
    """PENDING/FAILED → RUNNING, recording the input the step receives. Returns the cancel flag."""
    params = _run_cte_params(claim, first_write=first_write)
    params.update(input=Jsonb(outputs), next_id=task.pk)
    run_alive, started, cancel = _execute_prepared(_sql(_START_SQL), params)
    if not started:
        _fenced_or_forbidden(claim, run_alive, task, TaskStatus.RUNNING)
    _emit_task(claim, task, TaskStatus.RUNNING)
    return bool(cancel)


def _task_advance(
    claim: Claim,
    task: MarketplaceTask,
    output: dict,
    reused: bool,
    nxt: MarketplaceTask | None,
    outputs: dict,
    *,
    renew: bool,
) -> bool:
    """RUNNING → COMPLETED with the step's output and, unless the job is being cancelled, the
    next task → RUNNING with its input, in one commit (renewing the lease if ``renew``).
    Returns the cancel flag."""
    states.check("task", task.pk, TaskStatus.RUNNING, TaskStatus.COMPLETED)
    params = _run_cte_params(claim, first_write=False)
    params.update(output=Jsonb(output), reused=reused, task_id=task.pk, input=Jsonb(outputs),
                  next_id=nxt.pk if nxt else None)  # fmt: skip
    sql = _ADVANCE_RENEW_SQL if renew else _ADVANCE_SQL
    run_alive, done, cancel, started = _execute_prepared(_sql(sql), params)
    if not done:
        _fenced_or_forbidden(claim, run_alive, task, TaskStatus.COMPLETED)
    _emit_task(claim, task, TaskStatus.COMPLETED, reused=reused)
    if nxt is not None and started:
        _emit_task(claim, nxt, TaskStatus.RUNNING)
    elif nxt is not None and not cancel:
        _fenced_or_forbidden(claim, run_alive, nxt, TaskStatus.RUNNING)
    return bool(cancel)


def _emit_task(claim: Claim, task: MarketplaceTask, status: str, **data) -> None:
    events.emit("task_progress", status=status, job_id=claim.job_id, task_id=task.pk,
                run_id=claim.run_id, batch_id=claim.batch_id,
                data={"step": task.step_type, "order": task.step_order, **data})  # fmt: skip


def steps_completed_by(run_id: int) -> int:
    """Steps a run completed (kept on the run when it ends; tasks remember their last run)."""
    return MarketplaceTask.objects.filter(last_run_id=run_id, status=TaskStatus.COMPLETED).count()


def _end_run(claim: Claim, status: str, **fields) -> None:
    from orchestration import dispatch

    transitions.transition(JobRun, claim.run_id, status, finished_at=timezone.now(),
                           steps_completed=steps_completed_by(claim.run_id), **fields)  # fmt: skip
    dispatch.runs_finished(current_schema(), 1)


_FINISH_SQL = """
WITH run AS (
    UPDATE {run} SET status = 'completed', finished_at = %(now)s,
           steps_completed = (SELECT count(*) FROM {task}
                               WHERE last_run_id = %(run_id)s AND status = 'completed')
     WHERE id = %(run_id)s AND status = 'running'
 RETURNING job_id),
job AS (
    UPDATE {job} AS j SET status = 'completed', completed_at = %(now)s, result = %(result)s,
           error_message = '', direct = false, cancel_requested = false
      FROM run WHERE j.id = run.job_id AND j.status IN ({job_sources})
 RETURNING j.id),
{hook},
queue AS (
    UPDATE {queue} SET active_runs = GREATEST(active_runs - 1, 0),
           ready_at = COALESCE(ready_at, now()), signal_seq = signal_seq + 1
     WHERE schema_name = %(schema)s AND EXISTS (SELECT 1 FROM job)
 RETURNING 1),
batch AS (
    -- Reading ``queue`` here makes it run (and lock the tenant's queue row) before this
    -- locks the batch row: every path takes the queue row before the batch row (deadlocks
    -- otherwise, with a job of the batch failing in another worker). Always true.
    UPDATE {batch} SET completed_jobs = completed_jobs + 1
     WHERE id = %(batch_id)s AND EXISTS (SELECT 1 FROM job)
       AND (SELECT count(*) FROM queue) >= 0
 RETURNING {batch_columns})
SELECT (SELECT count(*) FROM run), (SELECT count(*) FROM job), (SELECT count(*) FROM queue),
       batch.*
  FROM (SELECT 1) AS one LEFT JOIN batch ON true
"""


def _finish_completed(claim: Claim, outputs: dict) -> str:
    """Run and job COMPLETED, the tenant's running count down and the batch's counter up, in
    one fenced statement."""
    params: dict[str, Any] = {"now": timezone.now(), "run_id": claim.run_id, "result": Jsonb(outputs),
              "schema": current_schema(), "batch_id": claim.batch_id}  # fmt: skip
    with transaction.atomic():
        run_done, job_done, _queue, *batch_row = _execute_prepared(_finish_sql(), params)
        if not run_done:
            raise RunFenced(f"run {claim.run_id} of job {claim.job_id} is no longer current")
        if not job_done:  # the atomic block rolls the run's update back
            current = (
                MarketplaceJob.objects.filter(pk=claim.job_id)
                .values_list("status", flat=True)
                .first()
            )
            raise states.ForbiddenTransition("job", claim.job_id, str(current), JobStatus.COMPLETED)
        batch_id = claim.batch_id
        events.emit("run_completed", status=RunStatus.COMPLETED, job_id=claim.job_id,
                    run_id=claim.run_id, batch_id=batch_id)  # fmt: skip
        events.emit("job_status", status=JobStatus.COMPLETED, job_id=claim.job_id,
                    run_id=claim.run_id, batch_id=batch_id, data={"from": JobStatus.RUNNING})  # fmt: skip
        if batch_id and batch_row[0] is not None:  # (None: the batch was deleted meanwhile)
            batch = Batch.from_db(connection.alias, batch_row_columns(), batch_row)
            batch_counters_moved(batch)
            if batch.mode == Batch.Mode.SEQUENTIAL:
                batch_next_sequential(batch_id)
    return JobStatus.COMPLETED


@functools.cache
def _finish_sql() -> str:
    from tenants.models import TenantQueue

    return _FINISH_SQL.format(
        run=JobRun._meta.db_table, job=MarketplaceJob._meta.db_table,
        task=MarketplaceTask._meta.db_table, batch=Batch._meta.db_table,
        queue=f"public.{TenantQueue._meta.db_table}",
        batch_columns=", ".join(batch_row_columns()),
        job_sources=_sql_list(states.sources("job", JobStatus.COMPLETED)),
        hook=outbox.completed_cte("job"),  # the job.run.completed webhook rows, if any
    )  # fmt: skip


def _finish_cancelled(claim: Claim) -> str:
    """The job stopped at a step boundary on a cancel request: run and job CANCELLED, the
    tasks it did not complete CANCELLED; in a sequential group the jobs after it SKIPPED."""
    now = timezone.now()
    with transaction.atomic():
        _fence(claim)
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


def _finish_failed(
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
        _fence(claim)
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
    from orchestration import dispatch

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
        dispatch.wake_at(current_schema(), run_after)
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


def job_execute_now(*, job_id: int) -> str | None:
    """Claim and run one specific job in this process (CLI `run_job`, tests). None if not claimable."""
    now = timezone.now()
    with transaction.atomic():
        job = (
            MarketplaceJob.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk=job_id, status__in=JOB_CLAIMABLE, cancel_requested=False)
            .only(*claims.CLAIM_FIELDS)
            .first()
        )
        if job is None:
            return None
        (claim,) = _start_runs([job], worker=_worker_id(), now=now)
    executor = StepExecutor()
    try:
        return execute_claim(claim, executor=executor)
    finally:
        executor.close()


def run_available_jobs(
    *, until: float | None = None, limit: int | None = None, executor: StepExecutor | None = None
) -> int:
    """Claim and run jobs of the current tenant until none is runnable, ``until`` (monotonic)
    passes or ``limit`` jobs ran. Returns how many ran."""
    own = executor is None
    executor = executor or StepExecutor()
    ran = 0
    batch = int(conf.get("CLAIM_BATCH"))
    try:
        while (until is None or time.monotonic() < until) and (limit is None or ran < limit):
            claimed = claim_jobs(limit=batch if limit is None else min(batch, limit - ran))
            if not claimed:
                break
            ran += execute_claims(claimed, executor=executor)[0]
    finally:
        if own:
            executor.close()
    return ran
