"""Part 2's data: the job table filled to a size in one ``INSERT … SELECT generate_series``."""

from __future__ import annotations

import time
from typing import Any

from bench.live_admin.constants import SCHEMA

FILL_BATCHES = 5


MARKETPLACES = ("ebay", "etsy", "vinted")


ACTIONS = ("publish", "update", "update", "sync", "unpublish", "import")


# Out of 100: completed 86, failed 5, queued 3, pending 2, cancelled 2, retrying 1, skipped 1.
STATUS_SQL = """CASE WHEN h < 86 THEN 'completed' WHEN h < 91 THEN 'failed' WHEN h < 94 THEN 'queued'
  WHEN h < 96 THEN 'pending' WHEN h < 98 THEN 'cancelled' WHEN h < 99 THEN 'retrying'
  ELSE 'skipped' END"""


FILL_SQL = """
INSERT INTO orchestration_marketplacejob (
    batch_id, sequence, product_id, sku, marketplace, resource_key, action, params, status,
    priority, direct, max_retries, retry_count, run_after, cancel_requested, error_message,
    result, current_run_id, created_at, started_at, completed_at, updated_at, concurrency_key)
SELECT CASE WHEN g %% 5 = 0 THEN NULL ELSE (%(batches)s::bigint[])[1 + g %% %(nbatches)s] END,
       g %% 1000, NULL, 'SKU-' || lpad((g %% 200000)::text, 7, '0'),
       (%(marketplaces)s::text[])[1 + g %% %(nmarkets)s],
       (%(marketplaces)s::text[])[1 + g %% %(nmarkets)s],
       (%(actions)s::text[])[1 + (g / 7) %% %(nactions)s], '{}'::jsonb, s.status, 0, false, 3,
       CASE WHEN s.status IN ('failed', 'retrying') THEN 1 ELSE 0 END, c.at, false,
       CASE WHEN s.status = 'failed' THEN 'HTTP 400: invalid field in step' || (1 + g %% 5) ELSE '' END,
       NULL, NULL, c.at,
       CASE WHEN s.status NOT IN ('pending', 'queued') THEN c.at + interval '2 seconds' END,
       CASE WHEN s.status IN ('completed', 'failed', 'cancelled', 'skipped')
            THEN c.at + interval '9 seconds' END,
       c.at, ''
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
 CROSS JOIN LATERAL (SELECT (g * 7919) %% 100 AS h) AS r
 CROSS JOIN LATERAL (SELECT {status} AS status) AS s
 CROSS JOIN LATERAL (SELECT now() - interval '1 hour'
                            - interval '90 days' * (1 - g::float8 / %(span)s) AS at) AS c
"""


BATCH_COUNTERS_SQL = """
UPDATE orchestration_batch AS b
   SET total_jobs = s.total, completed_jobs = s.completed, failed_jobs = s.failed,
       cancelled_jobs = s.cancelled, skipped_jobs = s.skipped,
       status = CASE WHEN s.completed + s.failed + s.cancelled + s.skipped < s.total
                     THEN 'running' ELSE 'partial' END
  FROM (SELECT batch_id, count(*) AS total,
               count(*) FILTER (WHERE status = 'completed') AS completed,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
               count(*) FILTER (WHERE status = 'skipped') AS skipped
          FROM orchestration_marketplacejob WHERE batch_id = ANY(%(batches)s) GROUP BY batch_id) AS s
 WHERE b.id = s.batch_id
"""


def tenant_cursor():
    from django.db import connection

    connection.set_schema(SCHEMA)
    return connection.cursor()


def fill_jobs(target: int, span: int, batches: list[int]) -> dict[str, Any]:
    """Insert rows until the job table holds ``target``; then the batches' counters and
    ``VACUUM (ANALYZE)`` (statistics, visibility map; no autovacuum during the timings)."""
    from django.db import connection, transaction

    with tenant_cursor() as cursor:
        cursor.execute("SELECT count(*) FROM orchestration_marketplacejob")
        current = cursor.fetchone()[0]
    added = max(0, target - current)
    t = time.perf_counter()
    if added:
        with transaction.atomic(), tenant_cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO off")
            cursor.execute(
                FILL_SQL.replace("{status}", STATUS_SQL),
                {"batches": batches, "nbatches": len(batches), "marketplaces": list(MARKETPLACES),
                 "nmarkets": len(MARKETPLACES), "actions": list(ACTIONS),
                 "nactions": len(ACTIONS), "first": current + 1, "last": target, "span": span},
            )  # fmt: skip
            cursor.execute(BATCH_COUNTERS_SQL, {"batches": batches})
    insert_s = time.perf_counter() - t
    t = time.perf_counter()
    with tenant_cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) orchestration_marketplacejob")
        cursor.execute("VACUUM (ANALYZE) orchestration_batch")
        cursor.execute(
            "SELECT status, count(*) FROM orchestration_marketplacejob GROUP BY 1 ORDER BY 2 DESC"
        )
        statuses = dict(cursor.fetchall())
        cursor.execute("SELECT count(*) FROM orchestration_batch")
        batch_count = cursor.fetchone()[0]
    analyze_s = time.perf_counter() - t
    connection.set_schema_to_public()
    return {
        "rows": sum(statuses.values()),
        "inserted": added,
        "insert_s": round(insert_s, 2),
        "vacuum_analyze_s": round(analyze_s, 2),
        "statuses": statuses,
        "batches": batch_count,
    }


def autovacuum_workers() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' "
            "AND datname = current_database()"
        )
        return int(cursor.fetchone()[0])


def filler_batches() -> list[int]:
    from django_tenants.utils import schema_context

    from orchestration.models import Batch

    with schema_context(SCHEMA):
        made = Batch.objects.bulk_create(
            Batch(name=f"catalogue sync {i}", status="running", created_by="bench")
            for i in range(1, FILL_BATCHES + 1)
        )
    return [b.pk for b in made]
