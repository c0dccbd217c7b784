"""The outbox writers: one statement per job-level transition, in the transition's transaction.

Each writer is an ``INSERT … SELECT`` over the tenant's active endpoints that subscribe to
the event: with no such endpoint it writes nothing (and generates nothing). The payload is
built by PostgreSQL from the rows the transition just wrote (a snapshot: a later retry does
not change what an earlier event said). One event id per event, shared by its endpoints.

The engine calls these from its transition paths (runner, batches); the completed path
embeds ``completed_cte`` in its single finishing statement, so completing a job costs no
extra round trip.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from orchestration.models import Batch, JobRun, MarketplaceJob, MarketplaceTask
from tenants.db import current_schema
from webhooks.models import EventType, WebhookDelivery, WebhookEndpoint

_SUBSCRIBES = "e.active AND (cardinality(e.event_types) = 0 OR {type} = ANY(e.event_types))"
# ISO 8601 in UTC with microseconds, like the live events' timestamps.
_TS = """to_char(%(now)s::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""

_COLUMNS = """(event_id, event_type, endpoint_id, job_id, run_id, batch_id, payload, status,
    attempts, next_attempt_at, retry_from, created_at, claimed_by, last_error)"""

# {src}: rows (job_id, event_id); {type}/{status}: SQL expressions; {extra}: a jsonb
# expression merged into the payload (failed: the error).
_JOB_INSERT = """
INSERT INTO {delivery} {columns}
SELECT src.event_id, {type}, e.id, j.id, r.id, j.batch_id,
       jsonb_build_object(
           'id', src.event_id, 'type', {type}, 'timestamp', {ts}, 'tenant', %(schema)s::text,
           'status', {status}, 'run_id', r.id, 'attempt', r.attempt,
           'idempotency_key', COALESCE('run-' || r.id::text, 'event-' || src.event_id::text),
           'job', jsonb_build_object(
               'id', j.id, 'marketplace', j.marketplace, 'action', j.action,
               'product_id', j.product_id, 'sku', j.sku, 'batch_id', j.batch_id,
               'status', {status}, 'retry_count', j.retry_count, 'max_retries', j.max_retries),
           'progress', jsonb_build_object(
               'steps_completed', tk.done, 'steps_total', tk.total,
               'percent', CASE WHEN tk.total = 0 THEN 0 ELSE (100 * tk.done / tk.total) END),
           'outputs', tk.outputs
       ) || {extra},
       'pending', 0, %(now)s, %(now)s, %(now)s, '', ''
  FROM {src} AS src
  JOIN {job} j ON j.id = src.job_id
  LEFT JOIN {run} r ON r.id = %(run_id)s
  JOIN {endpoint} e ON {subscribes}
 CROSS JOIN LATERAL (
       SELECT count(*) FILTER (WHERE {completed}) AS done, count(*) AS total,
              COALESCE(jsonb_object_agg(t.step_type, {output}) FILTER (
                  WHERE {completed} AND {output} IS NOT NULL), '{{}}'::jsonb) AS outputs
         FROM {task} t WHERE t.job_id = j.id) AS tk
"""
# The job's steps as the statement sees them: committed, or (the runner's finishing
# statement) with its last step, completed by that same statement, counted in.
_COMPLETED = {"completed": "t.status = 'completed'", "output": "t.output"}
_COMPLETED_WITH_LAST = {
    "completed": "(t.status = 'completed' OR t.id = %(task_id)s)",
    "output": "CASE WHEN t.id = %(task_id)s THEN %(output)s::jsonb ELSE t.output END",
}


def _tables() -> dict[str, str]:
    return {
        "delivery": WebhookDelivery._meta.db_table,
        "endpoint": WebhookEndpoint._meta.db_table,
        "job": MarketplaceJob._meta.db_table,
        "run": JobRun._meta.db_table,
        "task": MarketplaceTask._meta.db_table,
        "columns": _COLUMNS,
        "ts": _TS,
    }


def _literal(value: str) -> str:
    if not value.replace(".", "").replace("_", "").isalpha():  # code constants, never input
        raise ValueError(f"unexpected event type or status {value!r}")
    return f"'{value}'::text"


@functools.cache
def completed_cte(job_cte: str = "job") -> str:
    """Two CTEs for the runner's finishing statement: a ``job.run.completed`` outbox row per
    subscribing endpoint for the job its ``job_cte`` CTE returned (``RETURNING j.id``). Uses
    its ``%(now)s``, ``%(run_id)s``, ``%(schema)s``, ``%(task_id)s`` and ``%(output)s``
    parameters. The rows it reads are the statement's snapshot (job still running, its last
    step too): the status is given, and the last step (``task_id``, completed by the same
    statement with ``output``; NULL if none) is counted in."""
    kind = _literal(EventType.JOB_RUN_COMPLETED)
    tables = _tables()
    src = f"""
hook_src AS MATERIALIZED (
    SELECT {job_cte}.id AS job_id, gen_random_uuid() AS event_id FROM {job_cte}
     WHERE EXISTS (SELECT 1 FROM {tables["endpoint"]} e
                    WHERE {_SUBSCRIBES.format(type=kind)}))"""
    insert = _JOB_INSERT.format(
        **tables, **_COMPLETED_WITH_LAST, src="hook_src", type=kind, status=_literal("completed"),
        extra="'{}'::jsonb", subscribes=_SUBSCRIBES.format(type=kind),
    )  # fmt: skip
    return f"{src},\nhook AS ({insert} RETURNING 1)"


@functools.cache
def _job_events_sql() -> str:
    tables = _tables()
    kind = "%(type)s::text"
    src = f"""(SELECT s.job_id, gen_random_uuid() AS event_id
                FROM unnest(%(job_ids)s::bigint[]) AS s(job_id)
               WHERE EXISTS (SELECT 1 FROM {tables["endpoint"]} e
                              WHERE {_SUBSCRIBES.format(type=kind)}))"""
    extra = """CASE WHEN %(type)s::text = 'job.run.failed' THEN jsonb_build_object('error',
                   jsonb_build_object('message', r.error_message, 'step', r.failed_step,
                                      'kind', r.error_kind, 'will_retry', %(will_retry)s::boolean,
                                      'retry_at', %(retry_at)s::text))
                    WHEN %(type)s::text = 'job.run.skipped' THEN jsonb_build_object(
                         'reason', j.error_message)
                    ELSE '{}'::jsonb END"""
    # A MATERIALIZED CTE: each job's event id is generated once, whatever the join order.
    insert = _JOB_INSERT.format(
        **tables, **_COMPLETED, src="src", type=kind, status="%(status)s::text", extra=extra,
        subscribes=_SUBSCRIBES.format(type=kind),
    )  # fmt: skip
    return f"WITH src AS MATERIALIZED {src}\n{insert}"


def record_job_events(
    event_type: str,
    *,
    job_ids: list[int],
    status: str,
    run_id: int | None = None,
    will_retry: bool | None = None,
    retry_at: datetime | None = None,
) -> None:
    """Outbox rows for ``event_type`` about these jobs (already moved to ``status`` in the
    current transaction), one per subscribing endpoint and job. One statement; writes
    nothing when no active endpoint subscribes."""
    if not job_ids:
        return
    params: dict[str, Any] = {
        "type": str(event_type), "job_ids": list(job_ids), "status": str(status),
        "run_id": run_id, "will_retry": will_retry,
        "retry_at": retry_at.isoformat() if retry_at else None,
        "now": timezone.now(), "schema": current_schema(),
    }  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_job_events_sql(), params)


@functools.cache
def _batch_event_sql() -> str:
    kind = "%(type)s::text"
    delivery, endpoint = _tables()["delivery"], _tables()["endpoint"]
    return f"""
WITH src AS MATERIALIZED (
    SELECT gen_random_uuid() AS event_id
     WHERE EXISTS (SELECT 1 FROM {endpoint} e WHERE {_SUBSCRIBES.format(type=kind)}))
INSERT INTO {delivery} {_COLUMNS}
SELECT src.event_id, {kind}, e.id, NULL, NULL, b.id,
       jsonb_build_object(
           'id', src.event_id, 'type', {kind}, 'timestamp', {_TS}, 'tenant', %(schema)s::text,
           'status', %(status)s::text, 'idempotency_key', 'event-' || src.event_id::text,
           'batch', jsonb_build_object(
               'id', b.id, 'name', b.name, 'mode', b.mode, 'status', %(status)s::text,
               'total_jobs', b.total_jobs, 'completed_jobs', b.completed_jobs,
               'failed_jobs', b.failed_jobs, 'cancelled_jobs', b.cancelled_jobs,
               'skipped_jobs', b.skipped_jobs),
           'progress', jsonb_build_object(
               'done_jobs', b.completed_jobs + b.failed_jobs + b.cancelled_jobs + b.skipped_jobs,
               'total_jobs', b.total_jobs,
               'percent', CASE WHEN b.total_jobs = 0 THEN 100 ELSE 100 * (b.completed_jobs
                   + b.failed_jobs + b.cancelled_jobs + b.skipped_jobs) / b.total_jobs END)),
       'pending', 0, %(now)s, %(now)s, %(now)s, '', ''
  FROM src
  JOIN {Batch._meta.db_table} b ON b.id = %(batch_id)s
  JOIN {endpoint} e ON {_SUBSCRIBES.format(type=kind)}
"""


def record_batch_event(event_type: str, *, batch_id: int, status: str) -> None:
    """An outbox row per subscribing endpoint for a batch that just finished (its counters
    and status written earlier in the current transaction)."""
    params: dict[str, Any] = {"type": str(event_type), "batch_id": batch_id, "status": str(status),
              "now": timezone.now(), "schema": current_schema()}  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_batch_event_sql(), params)
