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

import contextlib
import logging
import os
import random
import time
import uuid
from datetime import datetime, timedelta
from functools import partial

import psycopg
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from orchestration import conf
from tenants.db import use_public_schema

logger = logging.getLogger(__name__)

# What a lost database connection raises (a restart, a failover, a network cut): Django's
# wrappers, and psycopg's own errors from the runner's raw prepared statements.
DATABASE_LOST = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def _tq_table() -> str:
    from tenants.models import TenantQueue

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
            INSERT INTO {_tq_table()} AS q (schema_name, ready_at, next_wake_at, signal_seq, active_runs, paused)
            VALUES (%(schema)s, CASE WHEN %(due)s THEN now() END, %(wake)s, 1, 0, false)
            ON CONFLICT (schema_name) DO UPDATE
               SET ready_at = CASE WHEN %(due)s THEN COALESCE(q.ready_at, now()) ELSE q.ready_at END,
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
                _queue_drain(slot.pk, now)
                return True
            existing = DrainSlot.objects.count()
            wanted = conf.drain_slots()
            if existing >= wanted:
                return False
            DrainSlot.objects.bulk_create([DrainSlot() for _ in range(wanted - existing)])
    return False


def _queue_drain(slot_id: int, now: datetime) -> None:
    """Mark the slot queued with a new token and enqueue its drain message (in the caller's
    transaction). With the ORM broker the message is part of the transaction (it commits
    with the slot or not at all); with Redis it is sent after commit."""
    from django.conf import settings
    from django_q.tasks import async_task

    from tenants.models import DrainSlot

    token = uuid.uuid4().hex
    DrainSlot.objects.filter(pk=slot_id).update(
        held_until=now + _slot_grace(), holder="queued", token=token, queued_at=now
    )
    send = partial(async_task, "orchestration.tasks.drain", slot_id, token)
    if settings.Q_CLUSTER.get("orm"):
        send()
    else:
        transaction.on_commit(send)


def requeue_stale_slots(*, queued_before: datetime) -> int:
    """Slots whose drain message was queued before ``queued_before`` and never taken (a
    cluster restarted with it in its local queue): new token, new message. The old
    message, if the broker redelivers it, finds another token and does nothing."""
    from tenants.models import DrainSlot

    now = timezone.now()
    requeued = 0
    with transaction.atomic():
        for slot_id in (
            DrainSlot.objects.select_for_update(skip_locked=True)
            .filter(holder="queued", queued_at__lt=queued_before)
            .order_by("pk")
            .values_list("pk", flat=True)
        ):
            _queue_drain(slot_id, now)
            requeued += 1
    if requeued:
        logger.warning("re-queued %s drain message(s) that no worker took", requeued)
    return requeued


def _take_slot(slot_id: int, token: str | None, holder: str) -> bool:
    """The drain of this message starts: hold its slot. False if the message is stale (the
    slot was re-queued with another token, or is held by a drain already)."""
    from tenants.models import DrainSlot

    slots = DrainSlot.objects.filter(pk=slot_id, holder="queued")
    if token is not None:
        slots = slots.filter(token=token)
    return bool(
        slots.update(held_until=timezone.now() + _slot_grace(), holder=holder, queued_at=None)
    )


def _hold_slot(slot_id: int, holder: str) -> None:
    from tenants.models import DrainSlot

    DrainSlot.objects.filter(pk=slot_id, holder=holder).update(
        held_until=timezone.now() + _slot_grace()
    )
    cluster_progress()


CLUSTER_ENV = "ORCHESTRATION_CLUSTER"  # set by the watchdog on the cluster it runs


def cluster_progress() -> None:
    """This worker's cluster is doing work (a drain started or moved on): tell its watchdog."""
    from tenants.models import WorkerCluster

    name = os.environ.get(CLUSTER_ENV)
    if name:
        WorkerCluster.objects.filter(name=name).update(last_progress_at=timezone.now())


# The slot of the drain running in this process, renewed by the runner's heartbeat during
# long jobs (a drain only renews it between tenant turns otherwise).
_current_slot: tuple[int, str] | None = None


def drain_heartbeat() -> None:
    if _current_slot is not None:
        _hold_slot(*_current_slot)


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
        if not pid.isdigit() or process_alive(int(pid)):
            continue
        freed += DrainSlot.objects.filter(pk=slot_id, holder=holder).update(
            held_until=None, holder=""
        )
    if freed:
        logger.warning("freed %s drain slot(s) held by workers that are gone", freed)
    return freed


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _free_slot(slot_id: int, holder: str) -> None:
    from tenants.models import DrainSlot

    DrainSlot.objects.filter(pk=slot_id, holder=holder).update(held_until=None, holder="")


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
    deadline: float | None = None,
) -> int:
    """Run the tenant's claimable jobs until ``until`` (monotonic). Marks it idle when empty.

    ``pace`` (seconds per job, per tenant) is kept by the caller across turns; see
    ``claim_size``. No claimed job starts after ``deadline`` (the drain's): those are
    handed back unclaimed. A claim that raises ends the tenant's turn (logged); the drain
    goes on with the next tenant.
    """
    from orchestration.services.claims import next_wake_time
    from orchestration.services.recovery import runs_hand_back
    from orchestration.services.runner import claim_jobs, execute_claims

    pace = {} if pace is None else pace
    ran = 0
    with schema_context(schema_name):
        # Webhook deliveries first, for a share of the turn (jobs get the rest, and leave
        # what they do not use to the deliveries): neither starves the other.
        share, every = webhooks_share()
        start = time.monotonic()
        _deliver_webhooks(schema_name, until=start + (until - start) * share)
        hooks_next = time.monotonic() + every
        while (now := time.monotonic()) < until:
            try:
                claimed = claim_jobs(limit=claim_size(pace.get(schema_name), until - now))
            except DATABASE_LOST:
                raise
            except Exception:
                logger.exception("claiming jobs of tenant %s failed; next tenant", schema_name)
                break
            if not claimed:
                mark_idle(schema_name, seen_seq, next_wake_time(timezone.now()))
                break
            started = time.monotonic()
            done, left = execute_claims(claimed, executor=executor, deadline=deadline)
            ran += done
            if left:
                runs_hand_back(left, message="handed back unstarted: the drain's time was up")
                break
            per_job = (time.monotonic() - started) / len(claimed)
            previous = pace.get(schema_name)
            pace[schema_name] = per_job if previous is None else (previous + per_job) / 2
            if (now := time.monotonic()) >= hooks_next:
                # The events these jobs just wrote go out within the turn, not after it.
                _deliver_webhooks(schema_name, until=now + (until - now) * share)
                hooks_next = time.monotonic() + every
        _deliver_webhooks(schema_name, until=until, last=True)
    return ran


def webhooks_share() -> tuple[float, float]:
    """(share of a turn given to webhook deliveries, seconds between their passes)."""
    from webhooks import conf as webhooks_conf

    return webhooks_conf.get("TURN_SHARE"), webhooks_conf.get("PASS_SECONDS")


def _deliver_webhooks(schema_name: str, *, until: float, last: bool = False) -> None:
    """The tenant's due webhook deliveries (``webhooks.delivery``) until ``until``; the last
    pass of a turn also re-asserts when the next ones are due. A failure is logged and
    leaves the claimed rows to their lease (redelivered), never ends the drain."""
    from webhooks import delivery

    try:
        if time.monotonic() < until:
            delivery.deliver_due(until=until)
        if last:
            delivery.reassert_wake(schema_name)
    except DATABASE_LOST:
        raise
    except Exception:
        logger.exception("webhook deliveries of tenant %s failed; next tenant", schema_name)


RECONNECT_SECONDS = 60.0  # how long a drain waits for a lost database before giving up


def drain(slot_id: int | None = None, token: str | None = None) -> dict:
    """One q2 task's worth of work across tenants; see the module docstring.

    A stale message (its slot re-queued since, see ``requeue_stale_slots``) does nothing.
    A lost database connection does not end the drain: it waits for the database (up to
    ``RECONNECT_SECONDS``), hands back the claims it had not finished, and goes on.
    """
    global _current_slot
    from orchestration.services.executor import StepExecutor
    from orchestration.services.runner import DatabaseLost, _worker_id

    started = time.monotonic()
    deadline = started + conf.get("DRAIN_SECONDS")
    worker = _worker_id()
    if slot_id is not None:
        if not _take_slot(slot_id, token, worker):
            logger.info("stale drain message for slot %s: nothing to do", slot_id)
            return {"jobs": 0, "tenants": [], "stale": True}
        _current_slot = (slot_id, worker)
        cluster_progress()
    executor = StepExecutor()
    jobs = 0
    tenants: set[str] = set()
    pace: dict[str, float] = {}  # seconds per job seen in this drain, per tenant
    reconnects = 0
    try:
        _tune_worker_session()
        while time.monotonic() < deadline:
            try:
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
                    # Drains start together; a random first turn puts their turns out of
                    # phase, so a newly ready tenant waits for the earliest turn end.
                    turn *= random.uniform(0.5, 1.0)
                turn_end = min(deadline, time.monotonic() + turn)
                tenants.add(schema)
                jobs += serve_tenant(
                    schema, seq, until=turn_end, executor=executor, pace=pace, deadline=deadline
                )
                if slot_id is not None:
                    _hold_slot(slot_id, worker)
            except (DatabaseLost, *DATABASE_LOST) as exc:
                reconnects += 1
                logger.warning("drain lost its database connection: %s", exc)
                executor.close()
                if not wait_for_database(timeout=RECONNECT_SECONDS):
                    logger.error("database still unreachable after %ss", RECONNECT_SECONDS)
                    break
                _tune_worker_session()
                if isinstance(exc, DatabaseLost):
                    _hand_back_after_reconnect(schema, exc.left)
    finally:
        executor.close()
        _current_slot = None
        _release_slot_when_possible(slot_id, worker)
    try:
        wait = seconds_until_next_wake()
        if wait is not None and wait <= conf.get("WAKE_AHEAD_SECONDS"):
            ensure_drains()  # chain: work remains (or a retry is due soon)
    except DATABASE_LOST:
        logger.warning("could not chain a drain (database unreachable); the sweep will")
    return {
        "jobs": jobs,
        "tenants": sorted(tenants),
        "seconds": round(time.monotonic() - started, 3),
        "reconnects": reconnects,
    }


def _hand_back_after_reconnect(schema: str, left: list) -> None:
    from orchestration.services.recovery import runs_hand_back

    try:
        with schema_context(schema):
            counts = runs_hand_back(
                left, message="interrupted: the database connection was lost mid-job"
            )
        logger.warning("after reconnecting, handed back %s", counts)
    except Exception:
        # Left RUNNING: their leases expire and the sweep recovers them.
        logger.exception("could not hand back %s claim(s) after reconnecting", len(left))
    finally:
        use_public_schema()


def wait_for_database(*, timeout: float) -> bool:
    """Close the broken connection and poll until a new one answers (True) or ``timeout``."""
    end = time.monotonic() + timeout
    delay = 0.1
    while True:
        with contextlib.suppress(Exception):
            connection.close()
        try:
            use_public_schema()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except DATABASE_LOST:
            if time.monotonic() >= end:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _release_slot_when_possible(slot_id: int | None, worker: str) -> None:
    if slot_id is None:
        return
    for _ in range(2):
        try:
            use_public_schema()
            _free_slot(slot_id, worker)
            return
        except DATABASE_LOST:
            if not wait_for_database(timeout=30):
                break
    logger.warning("could not free drain slot %s; it expires by itself", slot_id)


def _tune_worker_session() -> None:
    """Workers' commits wait for the WAL flush by default (``SYNCHRONOUS_COMMIT=1``).

    ``ORCHESTRATION_SYNCHRONOUS_COMMIT=0`` is an operator's opt-out: commits then return
    before the flush, and a PostgreSQL crash (not a worker crash) may lose the last
    fraction of a second of committed step records; those steps run again and their
    idempotence check finds the effect already there (DESIGN invariant 3). The database
    itself stays consistent (docs/benchmarks.md, "Durability").
    """
    with connection.cursor() as cursor:
        if not conf.get("SYNCHRONOUS_COMMIT"):
            cursor.execute("SET synchronous_commit TO off")
        elif conf.get("COMMIT_DELAY_US") > 0:
            _set_group_commit(cursor)
        # The runner's hot statements are server-side prepared; with the default plan cache
        # mode PostgreSQL re-plans a custom plan for each execution (their CTEs cost more to
        # plan than to run: measured 60% of their time). Their generic plan is the same
        # primary-key lookups, so plan once per connection.
        cursor.execute("SET plan_cache_mode TO force_generic_plan")


def _set_group_commit(cursor) -> None:
    """``commit_delay``/``commit_siblings`` for this session (durable commits only): one WAL
    flush then covers the steps other workers commit meanwhile (docs/benchmarks.md). The
    settings need a superuser or ``GRANT SET ON PARAMETER``; refused, the drain goes on
    without them (the session is in autocommit here, so the error leaves nothing behind)."""
    from django.db import DatabaseError

    delay = int(conf.get("COMMIT_DELAY_US"))
    siblings = int(conf.get("COMMIT_SIBLINGS"))
    try:
        cursor.execute(f"SET commit_delay TO {delay}")
        cursor.execute(f"SET commit_siblings TO {siblings}")
    except DatabaseError as exc:
        logger.warning("commit_delay not set (%s): commits flush one by one", exc)


def tenants_with_active_runs() -> list[str]:
    from tenants.models import TenantQueue

    return list(TenantQueue.objects.filter(active_runs__gt=0).values_list("schema_name", flat=True))
