"""A running job's step writes: each is one fenced statement, run server-side prepared.

Fencing: each write a worker makes for a run first locks that run's row and checks it is
still RUNNING and still the job's current run. The recovery sweep takes the same lock to
declare a run lost, so a stale worker that wakes up after its run was recovered finds it
FAILED and writes nothing.
"""

from __future__ import annotations

import functools
import re
import weakref
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from django.db import connection
from django.utils import timezone
from psycopg.types.json import Jsonb

from orchestration import conf, events, states
from orchestration.engine.claims import Claim
from orchestration.engine.session import RunFenced
from orchestration.models import JobRun, MarketplaceJob, MarketplaceTask
from orchestration.states import RunStatus, TaskStatus


def fence(claim: Claim) -> None:
    """Lock the run row; raise RunFenced unless it is still this worker's live run."""
    alive = (
        JobRun.objects.select_for_update()
        .filter(pk=claim.run_id, status=RunStatus.RUNNING, job__current_run_id=claim.run_id)
        .values_list("pk", flat=True)
        .first()
    )
    if alive is None:
        raise RunFenced(f"run {claim.run_id} of job {claim.job_id} is no longer current")


# Every write of a running job is one statement. Its first CTE locks the run row: that is
# the fence (recovery takes the same lock to declare a run lost, and PostgreSQL re-checks
# ``status = 'running'`` after waiting for it). When the lease is due for renewal (and at
# the run's first write) the lock is an update that renews it; otherwise a row lock alone,
# which writes no new row version (the run's indexes are left alone). Then the tasks'
# guarded transitions; the result hands back the job's cancel flag, so the step boundary
# needs no extra query.
# A task is found by its id; its job is checked against the run's through a scalar subquery,
# not a join: a worker's connection keeps one generic plan per statement, and one planned while
# the task table looked empty joined through a full scan of the (job, step) index, reading
# every task of the tenant at every step (tests/integration/engine/test_statement_costs.py).
# What a task's start writes, wherever it is made (the first step, the step after a commit,
# the next job's first step at the previous job's end).
_TASK_START_SET = """status = 'running', input = %(input)s, started_at = %(now)s,
           completed_at = NULL, error_message = '', attempts = t.attempts + 1, last_run_id = %(run_id)s"""

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
    UPDATE {task} AS t SET """
    + _TASK_START_SET
    + """
     WHERE t.id = %(next_id)s AND t.job_id = (SELECT job_id FROM run) AND t.status IN ({task_sources})
 RETURNING t.job_id)
SELECT (SELECT count(*) FROM run), (SELECT count(*) FROM started),
       (SELECT cancel_requested FROM {job} WHERE id = (SELECT job_id FROM run))
"""
)

_ADVANCE_BODY = (
    """,
done AS (
    UPDATE {task} AS t SET status = 'completed', output = %(output)s, reused_existing = %(reused)s,
           completed_at = %(now)s
     WHERE t.id = %(task_id)s AND t.job_id = (SELECT job_id FROM run) AND t.status = 'running'
 RETURNING t.job_id),
flag AS (SELECT cancel_requested FROM {job} WHERE id = (SELECT job_id FROM done)),
started AS (
    UPDATE {task} AS t SET """
    + _TASK_START_SET
    + """
     WHERE t.id = %(next_id)s AND t.job_id = (SELECT job_id FROM done) AND t.status IN ({task_sources})
       AND NOT (SELECT cancel_requested FROM flag)
 RETURNING t.id)
SELECT (SELECT count(*) FROM run), (SELECT count(*) FROM done),
       COALESCE((SELECT cancel_requested FROM flag), false), (SELECT count(*) FROM started)
"""
)
_ADVANCE_RENEW_SQL = "WITH" + _RUN_RENEW_CTE + _ADVANCE_BODY
_ADVANCE_SQL = "WITH" + _RUN_LOCK_CTE + _ADVANCE_BODY


_EXPLICIT_PREPARE_ONLY = 2**31 - 1


def execute_prepared(sql: str, params: dict[str, Any]) -> tuple:
    """Run one of the hot statements as a server-side prepared statement; return its row.

    Django's cursors bind parameters client-side, so PostgreSQL would plan these CTEs on
    every step; a psycopg cursor with server-side binding on the same connection (same
    transaction, same tenant search_path, set by Django's cursor first) plans them once.
    The statement is sent with ``$n`` placeholders (see ``positional``) through a raw
    cursor, so psycopg does not parse its text again at each execution.
    """
    raw = connection.connection
    if raw is None or raw.closed or not getattr(connection, "search_path_set_schemas", None):
        with connection.cursor():  # connects and applies the tenant's search_path
            pass
        raw = connection.connection
    assert raw is not None
    cursor = _cursors.get(raw)
    if cursor is None:
        if raw.prepare_threshold is None:
            # Django turns psycopg's statement preparation off (``prepare_threshold=None``),
            # which also ignores ``prepare=True``. A threshold nothing reaches prepares only
            # these.
            raw.prepare_threshold = _EXPLICIT_PREPARE_ONLY
        cursor = _cursors[raw] = psycopg.RawCursor(raw)
    text, names = positional(sql)
    cursor.execute(text, [params[name] for name in names], prepare=True)
    row = cursor.fetchone()
    assert row is not None
    return tuple(row)


# One psycopg cursor per connection for the hot statements (a cursor per statement, and a
# Django cursor opened only to check the connection and the search path, were ~5% of a
# worker's Python per step); a new connection gets a new one. (django-tenants clears
# ``search_path_set_schemas`` when the tenant changes, so the path is set again then.)
_cursors: weakref.WeakKeyDictionary[psycopg.Connection, psycopg.RawCursor] = (
    weakref.WeakKeyDictionary()
)

_NAMED = re.compile(r"%\((\w+)\)s")


@functools.cache
def positional(sql: str) -> tuple[bytes, tuple[str, ...]]:
    """A statement written with ``%(name)s`` placeholders, as PostgreSQL's ``$n`` ones, and
    the names in their order (a name used twice is one parameter).

    psycopg's own conversion of named placeholders runs at every execution of a statement
    over 4,096 bytes (``MAX_CACHED_STATEMENT_LENGTH``): the job's end, with the next job's
    start in it, is longer (issue 17: ~5% of a worker's Python in a py-spy profile).
    """
    names: list[str] = []

    def number(match: re.Match) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    text = _NAMED.sub(number, sql)
    if "%" in text:
        raise ValueError(f"a hot statement holds a '%' that is not a %(name)s placeholder: {sql!r}")
    return text.encode(), tuple(names)


def compact_sql(sql: str) -> str:
    """The statement on one line with single spaces: shorter to hash, to send when it is
    prepared, and to read in ``pg_stat_activity`` and the server's log."""
    if "--" in sql:
        raise ValueError("a hot statement must not hold an SQL comment: it would swallow the rest")
    literals = sql.split("'")[1::2]
    if any(" ".join(literal.split()) != literal for literal in literals):
        raise ValueError("a string literal of a hot statement would lose its white space")
    return " ".join(sql.split())


@functools.cache
def _sql(template: str) -> str:
    return compact_sql(
        template.format(
            run=JobRun._meta.db_table,
            task=MarketplaceTask._meta.db_table,
            job=MarketplaceJob._meta.db_table,
            task_sources=sql_list(states.sources("task", TaskStatus.RUNNING)),
        )
    )


def sql_list(statuses) -> str:
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


def fenced_or_forbidden(claim: Claim, run_alive: int, task: MarketplaceTask, target: str) -> None:
    if not run_alive:
        raise RunFenced(f"run {claim.run_id} of job {claim.job_id} is no longer current")
    current = MarketplaceTask.objects.filter(pk=task.pk).values_list("status", flat=True).first()
    raise states.ForbiddenTransition("task", task.pk, str(current), target)


def task_start(claim: Claim, task: MarketplaceTask, outputs: dict, *, first_write: bool) -> bool:
    """PENDING/FAILED → RUNNING, recording the input the step receives. Returns the cancel flag."""
    params = _run_cte_params(claim, first_write=first_write)
    params.update(input=Jsonb(outputs), next_id=task.pk)
    run_alive, started, cancel = execute_prepared(_sql(_START_SQL), params)
    if not started:
        fenced_or_forbidden(claim, run_alive, task, TaskStatus.RUNNING)
    emit_task(claim, task, TaskStatus.RUNNING)
    return bool(cancel)


def task_advance(
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
    run_alive, done, cancel, started = execute_prepared(_sql(sql), params)
    if not done:
        fenced_or_forbidden(claim, run_alive, task, TaskStatus.COMPLETED)
    emit_task(claim, task, TaskStatus.COMPLETED, reused=reused)
    if nxt is not None and started:
        emit_task(claim, nxt, TaskStatus.RUNNING)
    elif nxt is not None and not cancel:
        fenced_or_forbidden(claim, run_alive, nxt, TaskStatus.RUNNING)
    return bool(cancel)


@dataclass
class NextStart:
    """The first step of the next claimed job, started by the commit that ends the job before
    it (``finish.finish_completed``): a drain running claimed jobs back to back then makes one
    commit per step, none of them only to start a job. ``started`` and ``cancel`` are set once
    that commit is done; unless ``started``, the job starts with its own ``task_start``."""

    claim: Claim
    task: MarketplaceTask
    outputs: dict
    started: bool = False
    cancel: bool = False


# The next job's start inside the previous job's end: its run's lock (a first write, so the
# lease is renewed and ``started_at`` set) and its first task's move to RUNNING, as in
# ``task_start``. Taken before the ending run's rows (its ``run`` waits for ``next_started``):
# the recovery sweep locks a run before its job's queue and batch rows, so these run and task
# locks must not be taken after them.
NEXT_START_CTES = (
    """
next_run AS (
    UPDATE {run} SET heartbeat_at = %(now)s, lease_expires_at = %(next_lease)s, started_at = %(now)s
     WHERE id = %(next_run_id)s AND status = 'running'
 RETURNING job_id),
next_started AS (
    UPDATE {task} AS t SET """
    + _TASK_START_SET.replace("%(input)s", "%(next_input)s").replace(
        "%(run_id)s", "%(next_run_id)s"
    )
    + """
     WHERE t.id = %(next_task_id)s AND t.job_id = (SELECT job_id FROM next_run)
       AND t.status IN ({task_sources})
 RETURNING t.job_id),"""
)

NEXT_START_COLUMNS = """(SELECT count(*) FROM next_started),
       COALESCE((SELECT cancel_requested FROM {job} WHERE id = (SELECT job_id FROM next_run)), false),"""


def next_start_params(start: NextStart, now) -> dict[str, Any]:
    return {"next_run_id": start.claim.run_id, "next_task_id": start.task.pk,
            "next_input": Jsonb(start.outputs),
            "next_lease": now + timedelta(seconds=conf.get("LEASE_SECONDS"))}  # fmt: skip


def emit_task(claim: Claim, task: MarketplaceTask, status: str, **data) -> None:
    events.emit("task_progress", status=status, job_id=claim.job_id, task_id=task.pk,
                run_id=claim.run_id, batch_id=claim.batch_id,
                data={"step": task.step_type, "order": task.step_order, **data})  # fmt: skip
