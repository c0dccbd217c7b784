"""The public ``TenantQueue`` index: which tenants have work, when the next backoff ends,
how many runs each has going, which are paused.

Written by the services when they queue work (the mark commits or rolls back with the jobs
that made it), by the runner when runs start and end, and by the drains that pick the
tenant whose turn it is. One row per tenant; idle tenants cost nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import connection, transaction

from orchestration.engine.slots import ensure_drains
from tenants.models import Tenant, TenantQueue

logger = logging.getLogger(__name__)


def _tq_table() -> str:
    return f"public.{TenantQueue._meta.db_table}"


def signal_work(schema_name: str) -> None:
    """The tenant has runnable jobs: mark it ready and make sure a drain is coming."""
    _mark_ready(schema_name)
    ensure_drains()


def signal_work_on_commit(schema_name: str) -> None:
    """In the caller's transaction: mark the tenant ready now (the mark commits or rolls
    back with the jobs that made it ready, so a process dying right after the commit loses
    no wake-up), and make sure a drain is coming once it commits.

    Lock order: callers mark the tenant before they move a batch's counters (the queue
    row before the batch row, as a finishing worker takes them).
    """
    _mark_ready(schema_name)
    transaction.on_commit(ensure_drains)


def _mark_ready(schema_name: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {_tq_table()} AS q (schema_name, ready_at, signal_seq, active_runs, paused)
            VALUES (%s, now(), 1, 0, false)
            ON CONFLICT (schema_name) DO UPDATE
               SET ready_at = COALESCE(q.ready_at, now()), signal_seq = q.signal_seq + 1
            """,
            [schema_name],
        )


def wake_at(schema_name: str, when: datetime) -> None:
    """Jobs of the tenant become runnable at ``when`` (a retry's backoff)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {_tq_table()} AS q (schema_name, next_wake_at, signal_seq, active_runs, paused)
            VALUES (%s, %s, 0, 0, false)
            ON CONFLICT (schema_name) DO UPDATE
               SET next_wake_at = LEAST(COALESCE(q.next_wake_at, EXCLUDED.next_wake_at), EXCLUDED.next_wake_at)
            """,
            [schema_name, when],
        )


def runs_started(schema_name: str, count: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {_tq_table()} AS q (schema_name, signal_seq, active_runs, paused)
            VALUES (%s, 0, %s, false)
            ON CONFLICT (schema_name) DO UPDATE SET active_runs = q.active_runs + %s
            """,
            [schema_name, count, count],
        )


def runs_finished(schema_name: str, count: int) -> None:
    """A run ended: its resource has room again, so the tenant may have startable work."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {_tq_table()}
               SET active_runs = GREATEST(active_runs - %s, 0),
                   ready_at = COALESCE(ready_at, now()), signal_seq = signal_seq + 1
             WHERE schema_name = %s
            """,
            [count, schema_name],
        )


def reconcile_marks(schema_name: str, *, due: bool, wake: datetime | None) -> bool:
    """The sweep's repair of a tenant's marks from what its job tables say: ``due`` (it
    has claimable jobs now) sets a missing ready mark; ``wake`` (its earliest backoff)
    pulls a missing or later wake-up forward. Returns whether it set the ready mark."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {_tq_table()} AS q (schema_name, ready_at, next_wake_at, signal_seq, active_runs, paused, swept_at)
            VALUES (%(schema)s, CASE WHEN %(due)s THEN now() END, %(wake)s, 1, 0, false, clock_timestamp())
            ON CONFLICT (schema_name) DO UPDATE
               SET swept_at = clock_timestamp(),
                   ready_at = CASE WHEN %(due)s THEN COALESCE(q.ready_at, now()) ELSE q.ready_at END,
                   signal_seq = q.signal_seq + CASE WHEN %(due)s AND q.ready_at IS NULL THEN 1 ELSE 0 END,
                   next_wake_at = CASE WHEN %(wake)s::timestamptz IS NULL THEN q.next_wake_at
                                       ELSE LEAST(COALESCE(q.next_wake_at, %(wake)s), %(wake)s) END
            RETURNING ready_at IS NOT NULL AND ready_at = now()  -- set by this statement
            """,
            {"schema": schema_name, "due": due, "wake": wake},
        )
        row = cursor.fetchone()
    marked = bool(row and row[0]) and due
    if marked:
        logger.info("tenant %s had claimable jobs without a ready mark; marked", schema_name)
    return marked


def tenants_to_sweep(limit: int) -> list[str]:
    """The ``limit`` tenants the sweep's slow pass reconciled least recently (never first),
    by ``TenantQueue.swept_at``, which ``reconcile_marks`` sets."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT t.schema_name FROM {Tenant._meta.db_table} t
              LEFT JOIN {_tq_table()} q ON q.schema_name = t.schema_name
             WHERE t.schema_name <> 'public'
             ORDER BY q.swept_at ASC NULLS FIRST, t.schema_name
             LIMIT %s
            """,
            [limit],
        )
        return [row[0] for row in cursor.fetchall()]


def tenant_paused(schema_name: str) -> bool:
    # Asked at every claim: plain SQL (the ORM's compilation of this ``exists()`` was ~5% of
    # a worker's Python in the claim, issue 17).
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {_tq_table()} WHERE schema_name = %s AND paused)",
            [schema_name],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def set_tenant_paused(schema_name: str, paused: bool) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {_tq_table()} AS q (schema_name, signal_seq, active_runs, paused, ready_at)
            VALUES (%s, 1, 0, %s, now())
            ON CONFLICT (schema_name) DO UPDATE
               SET paused = EXCLUDED.paused, ready_at = COALESCE(q.ready_at, now()),
                   signal_seq = q.signal_seq + 1
            """,
            [schema_name, paused],
        )


# --- drain slots ---------------------------------------------------------------


# --- picking tenants -----------------------------------------------------------------


def pick_tenant() -> tuple[str, int] | None:
    """The ready tenant whose turn it is (least recently served), or None.

    Cost depends on the number of tenants with work (partial indexes), not on all tenants.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {_tq_table()} SET last_served_at = now(),
                   ready_at = COALESCE(ready_at, CASE WHEN next_wake_at <= now() THEN now() END),
                   next_wake_at = CASE WHEN next_wake_at <= now() THEN NULL ELSE next_wake_at END
             WHERE id = (
                SELECT id FROM {_tq_table()}
                 WHERE NOT paused AND (ready_at IS NOT NULL OR next_wake_at <= now())
                 ORDER BY last_served_at NULLS FIRST, id
                 LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING schema_name, signal_seq
            """
        )
        row = cursor.fetchone()
    return (row[0], row[1]) if row else None


def mark_idle(schema_name: str, seen_seq: int, next_wake: datetime | None) -> None:
    """No claimable job was found: clear ``ready_at`` unless work was signalled meanwhile."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {_tq_table()}
               SET ready_at = CASE WHEN signal_seq = %s THEN NULL ELSE ready_at END,
                   next_wake_at = CASE
                       WHEN %s::timestamptz IS NULL THEN next_wake_at
                       ELSE LEAST(COALESCE(next_wake_at, %s::timestamptz), %s::timestamptz) END
             WHERE schema_name = %s
            """,
            [seen_seq, next_wake, next_wake, next_wake, schema_name],
        )


def seconds_until_next_wake() -> float | None:
    """Seconds until the earliest known backoff ends (0 if work is ready now), None if nothing waits.

    Written as two sub-queries so each can use its partial index (ready, wake) whatever the
    number of idle tenants.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT CASE
                     WHEN EXISTS (SELECT 1 FROM {_tq_table()}
                                   WHERE ready_at IS NOT NULL AND NOT paused) THEN 0
                     ELSE EXTRACT(EPOCH FROM (SELECT min(next_wake_at) FROM {_tq_table()}
                                               WHERE next_wake_at IS NOT NULL AND NOT paused) - now())
                   END
            """
        )
        row = cursor.fetchone()
    return None if row is None or row[0] is None else max(0.0, float(row[0]))


def tenants_with_active_runs() -> list[str]:
    return list(TenantQueue.objects.filter(active_runs__gt=0).values_list("schema_name", flat=True))
