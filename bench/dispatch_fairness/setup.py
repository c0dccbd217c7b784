"""The database both parts run on: tenants, the idle ``TenantQueue`` rows, part 1's queued work."""

from __future__ import annotations

from typing import Any

from bench import harness
from bench.dispatch_fairness.constants import (
    IDLE_PREFIX,
    PART1_ACTION,
    PART1_JOBS,
    PART1_MARKETPLACE,
    REAL_TENANTS,
)


def provision(env: dict[str, str]) -> dict[str, Any]:
    migrate_s = harness.migrate(env)
    print(f"  migrated in {migrate_s:.1f}s; creating {len(REAL_TENANTS)} tenants ...", flush=True)
    tenants = harness.create_tenants(REAL_TENANTS, env=env)
    print(f"  tenants created in {sum(tenants.values()):.1f}s")
    return {"migrate_schemas_s": round(migrate_s, 2), "create_tenant_s": tenants}


def tenant_queue_table() -> str:
    from tenants.models import TenantQueue

    return f"public.{TenantQueue._meta.db_table}"


def execute(sql: str, params: list | tuple = ()) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def populate_idle(count: int, *, parked_share: bool = False) -> None:
    """Replace the idle rows: ``count`` tenants with nothing to run now (they need no schema).

    70 % were served before (``last_served_at`` within 30 days, a ``signal_seq``); none is
    ready. "Parked" rows are not idle for the queue's indexes: waiting for a backoff 1-24 h
    away (``next_wake_at``: the wake index) or paused with work (``ready_at`` set: the ready
    index; the pick skips them). By default a constant 2 + 2 of them whatever ``count``, so
    only the number of truly idle rows varies; ``parked_share``: 2 % + 1 % of ``count``.
    """
    execute(f"DELETE FROM {tenant_queue_table()} WHERE schema_name LIKE %s", [IDLE_PREFIX + "%"])
    if count <= 0:
        return
    if parked_share:
        wake, paused = "i %% 50 = 1", "i %% 100 = 0"
    else:
        wake, paused = "i IN (1, 2)", "i IN (3, 4)"
    execute(
        f"""
        INSERT INTO {tenant_queue_table()} (schema_name, ready_at, signal_seq, last_served_at, next_wake_at,
                             active_runs, paused)
        SELECT %s || lpad(i::text, 6, '0'),
               CASE WHEN {paused} THEN now() - interval '1 day' END,
               CASE WHEN i %% 10 < 7 THEN 1 + (random() * 500)::int ELSE 0 END,
               CASE WHEN i %% 10 < 7 THEN now() - random() * interval '30 days' END,
               CASE WHEN {wake} THEN now() + interval '1 hour'
                                     + random() * interval '23 hours' END,
               0,
               {paused}
          FROM generate_series(1, %s) AS i
        """,
        [IDLE_PREFIX, count],
    )


def vacuum_analyze() -> None:
    execute(f"VACUUM ANALYZE {tenant_queue_table()}")


def table_facts() -> dict[str, Any]:
    from tenants.models import TenantQueue

    table = TenantQueue._meta.db_table
    (row,) = execute(
        f"""
        SELECT count(*), count(*) FILTER (WHERE ready_at IS NOT NULL AND NOT paused),
               count(*) FILTER (WHERE paused), count(*) FILTER (WHERE next_wake_at IS NOT NULL),
               pg_relation_size('{tenant_queue_table()}') / 8192, pg_total_relation_size('{tenant_queue_table()}') / 8192,
               (SELECT n_dead_tup FROM pg_stat_user_tables
                 WHERE schemaname = 'public' AND relname = %s)
          FROM {tenant_queue_table()}
        """,
        [table],
    )
    keys = ("rows", "ready", "paused", "waiting_for_wake", "heap_pages", "total_pages", "dead")
    return dict(zip(keys, row, strict=True))


def queue_part1_work() -> dict[str, int]:
    """A batch of queued jobs in each real tenant (their claims are rolled back, so it stays).

    The resource policy rows a tenant's first claim creates are created (committed) here:
    inside the rolled-back claims they would be created again by every cycle.
    """
    from django_tenants.utils import schema_context

    from orchestration.engine.claims import resource_policies
    from orchestration.services import JobSpec, batch_create

    batches = {}
    for schema in REAL_TENANTS:
        with schema_context(schema):
            batch = batch_create(
                name="dispatch cycles",
                jobs=[JobSpec(marketplace=PART1_MARKETPLACE, action=PART1_ACTION)] * PART1_JOBS,
            )
            resource_policies()
        batches[schema] = batch.pk
    return batches
