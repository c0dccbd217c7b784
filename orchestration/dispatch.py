"""Hands work to django-q2 without paying q2's per-task cost per job or per step.

The engine's tables are the queue of record. django-q2 only carries *drain* tasks:
a drain holds one of a few slots (as many as there are workers), picks the tenant
whose turn it is (round robin over tenants that have work, from the public
``TenantQueue`` index, so idle tenants cost nothing), claims and runs that tenant's
jobs for a bounded turn, moves on to the next tenant, and after a bounded time
hands back, chaining a new drain if work remains. A lost q2 message loses nothing:
its slot expires and the work is still in the tables.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timedelta
from functools import partial

from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from orchestration import conf
from tenants.db import use_public_schema

logger = logging.getLogger(__name__)


def _tq_table() -> str:
    from tenants.models import TenantQueue

    return f"public.{TenantQueue._meta.db_table}"


def signal_work(schema_name: str) -> None:
    """The tenant has runnable jobs: mark it ready and make sure a drain is coming."""
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
    ensure_drains()


def signal_work_on_commit(schema_name: str) -> None:
    transaction.on_commit(lambda: signal_work(schema_name))


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


def tenant_paused(schema_name: str) -> bool:
    from tenants.models import TenantQueue

    return TenantQueue.objects.filter(schema_name=schema_name, paused=True).exists()


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


def _slot_grace() -> timedelta:
    # How long an enqueued drain may wait in q2 before its slot is presumed lost.
    return timedelta(seconds=2 * conf.get("DRAIN_SECONDS") + 30)


def ensure_drains() -> int:
    """Enqueue a drain for every free slot (up to the worker count); returns how many."""
    started = 0
    while _start_one_drain():
        started += 1
    return started


def _start_one_drain() -> bool:
    from django_q.tasks import async_task

    from tenants.models import DrainSlot

    now = timezone.now()
    for _ in range(2):
        with transaction.atomic():
            slot = (
                DrainSlot.objects.select_for_update(skip_locked=True)
                .exclude(held_until__gt=now)
                .order_by("pk")
                .first()
            )
            if slot is not None:
                DrainSlot.objects.filter(pk=slot.pk).update(
                    held_until=now + _slot_grace(), holder="queued"
                )
                transaction.on_commit(partial(async_task, "orchestration.tasks.drain", slot.pk))
                return True
            existing = DrainSlot.objects.count()
            wanted = conf.drain_slots()
            if existing >= wanted:
                return False
            DrainSlot.objects.bulk_create([DrainSlot() for _ in range(wanted - existing)])
    return False


def _hold_slot(slot_id: int, holder: str) -> None:
    from tenants.models import DrainSlot

    DrainSlot.objects.filter(pk=slot_id).update(
        held_until=timezone.now() + _slot_grace(), holder=holder
    )


def free_slots_of_dead_workers() -> int:
    """Free the drain slots held by workers of this host whose process is gone (a worker
    killed mid-drain), instead of waiting for their expiry; returns how many.

    Run by the sweep, which each new worker process enqueues: a restarted cluster gets its
    full number of drains at once.
    """
    from orchestration.services.runner import _worker_id
    from tenants.models import DrainSlot

    prefix = _worker_id().rsplit(":", 1)[0] + ":"  # this host's holders ("<host>:<pid>")
    freed = 0
    for slot_id, holder in DrainSlot.objects.filter(
        held_until__gt=timezone.now(), holder__startswith=prefix
    ).values_list("pk", "holder"):
        pid = holder.removeprefix(prefix)
        if not pid.isdigit() or _process_alive(int(pid)):
            continue
        freed += DrainSlot.objects.filter(pk=slot_id, holder=holder).update(
            held_until=None, holder=""
        )
    if freed:
        logger.warning("freed %s drain slot(s) held by workers that are gone", freed)
    return freed


def _process_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _free_slot(slot_id: int) -> None:
    from tenants.models import DrainSlot

    DrainSlot.objects.filter(pk=slot_id).update(held_until=None, holder="")


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


def claim_size(seconds_per_job: float | None, remaining: float) -> int:
    """How many jobs to claim at once: as many as fit in the rest of the turn at the pace seen
    so far (one while the pace is unknown), at most ``CLAIM_BATCH``.

    Claimed jobs run to the end even past the turn, so a turn of slow jobs claims one at a
    time (the next tenant waits for at most one job), while quick jobs share a claim's fixed
    cost (rooms, locks, the runs' insert) among up to ``CLAIM_BATCH``.
    """
    if not seconds_per_job or seconds_per_job <= 0:
        return 1
    fits = int(max(remaining, 0.0) / seconds_per_job)
    return max(1, min(int(conf.get("CLAIM_BATCH")), fits))


def serve_tenant(
    schema_name: str,
    seen_seq: int,
    *,
    until: float,
    executor,
    pace: dict[str, float] | None = None,
) -> int:
    """Run the tenant's claimable jobs until ``until`` (monotonic). Marks it idle when empty.

    ``pace`` (seconds per job, per tenant) is kept by the caller across turns; see
    ``claim_size``.
    """
    from orchestration.services.claims import next_wake_time
    from orchestration.services.runner import claim_jobs, execute_claims

    pace = {} if pace is None else pace
    ran = 0
    with schema_context(schema_name):
        while (now := time.monotonic()) < until:
            claimed = claim_jobs(limit=claim_size(pace.get(schema_name), until - now))
            if not claimed:
                mark_idle(schema_name, seen_seq, next_wake_time(timezone.now()))
                break
            started = time.monotonic()
            ran += execute_claims(claimed, executor=executor)
            per_job = (time.monotonic() - started) / len(claimed)
            previous = pace.get(schema_name)
            pace[schema_name] = per_job if previous is None else (previous + per_job) / 2
    return ran


def drain(slot_id: int | None = None) -> dict:
    """One q2 task's worth of work across tenants; see the module docstring."""
    from orchestration.services.executor import StepExecutor
    from orchestration.services.runner import _worker_id

    started = time.monotonic()
    deadline = started + conf.get("DRAIN_SECONDS")
    executor = StepExecutor()
    jobs = 0
    tenants: set[str] = set()
    pace: dict[str, float] = {}  # seconds per job seen in this drain, per tenant
    if slot_id is not None:
        _hold_slot(slot_id, _worker_id())
    _tune_worker_session()
    try:
        while time.monotonic() < deadline:
            picked = pick_tenant()
            if picked is None:
                wait = seconds_until_next_wake()
                if wait is None or wait > min(
                    conf.get("WAKE_AHEAD_SECONDS"), deadline - time.monotonic()
                ):
                    break
                time.sleep(min(max(wait, 0.05), 0.5))
                continue
            schema, seq = picked
            turn = conf.get("TENANT_TURN_SECONDS")
            if not tenants:
                # Drains start together; a random first turn puts their turns out of phase,
                # so a newly ready tenant waits for the earliest turn end, not the last.
                turn *= random.uniform(0.5, 1.0)
            turn_end = min(deadline, time.monotonic() + turn)
            jobs += serve_tenant(schema, seq, until=turn_end, executor=executor, pace=pace)
            tenants.add(schema)
            if slot_id is not None:
                _hold_slot(slot_id, _worker_id())
    finally:
        executor.close()
        use_public_schema()
        if slot_id is not None:
            _free_slot(slot_id)
    wait = seconds_until_next_wake()
    if wait is not None and wait <= conf.get("WAKE_AHEAD_SECONDS"):
        ensure_drains()  # chain: work remains (or a retry is due soon)
    return {
        "jobs": jobs,
        "tenants": sorted(tenants),
        "seconds": round(time.monotonic() - started, 3),
    }


def _tune_worker_session() -> None:
    """Workers' commits don't wait for the WAL flush (``SYNCHRONOUS_COMMIT=off``, the default).

    A PostgreSQL crash (not a worker crash) may then lose the last fraction of a second of
    committed step records; those steps run again and their idempotence check finds the
    effect already there (DESIGN invariant 3). The database itself stays consistent.
    Set ``ORCHESTRATION_SYNCHRONOUS_COMMIT=1`` to wait for every flush instead.
    """
    with connection.cursor() as cursor:
        if not conf.get("SYNCHRONOUS_COMMIT"):
            cursor.execute("SET synchronous_commit TO off")
        # The runner's hot statements are server-side prepared; with the default plan cache
        # mode PostgreSQL re-plans a custom plan for each execution (their CTEs cost more to
        # plan than to run: measured 60% of their time). Their generic plan is the same
        # primary-key lookups, so plan once per connection.
        cursor.execute("SET plan_cache_mode TO force_generic_plan")


def tenants_with_active_runs() -> list[str]:
    from tenants.models import TenantQueue

    return list(TenantQueue.objects.filter(active_runs__gt=0).values_list("schema_name", flat=True))
