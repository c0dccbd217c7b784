"""Claiming: which job of the current tenant may start now (DESIGN invariant 7).

Order: "run now" jobs first, then priority, FIFO within a priority; ``run_after``
(backoff) respected. A job starts only if its resource has room: fewer running
jobs than the policy's concurrency, its start rate under ``rate_per_minute``, not
paused, and not reserved by a waiting "run now" job of another. The resource's
policy row is locked while checking, so two workers can never both take the last
place (the Vinted bridge never runs two jobs of a tenant at once).

Rate limits are spread over their window (issue 17), like a token bucket refilled at
``rate_per_minute / 60`` per second with room for about one second of starts: besides at
most ``rate`` starts in any 60 s, at most ``burst = ceil(rate / 60)`` starts in any
``burst * 60 / rate`` seconds (60/min: one start per second; 6/min: one per 10 s; 600/min:
ten per second). A batch of a rate-limited resource then drains evenly instead of starting
a minute's worth at once and idling for the rest of the minute.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Min, Q
from django.utils import timezone

from orchestration import conf, events, states, steps
from orchestration.engine import marks, slots
from orchestration.engine.counters import batch_apply_job_moves
from orchestration.engine.session import worker_id
from orchestration.models import JobRun, MarketplaceJob, MarketplaceTask, ResourcePolicy
from orchestration.states import JOB_CLAIMABLE, JobStatus, RunStatus
from tenants.db import current_schema

RATE_WINDOW = timedelta(seconds=60)
# What a claim loads of each job: enough to run it without reading it again.
CLAIM_FIELDS = ("id", "status", "current_run_id", "batch_id", "started_at", "resource_key", "direct",
                "marketplace", "action", "params", "product_id", "concurrency_key")  # fmt: skip
_RESERVING = [JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.RUNNING]


def resource_policies() -> dict[str, ResourcePolicy]:
    """The tenant's policies, creating rows for providers' resources that have none yet."""
    rows = {p.key: p for p in ResourcePolicy.objects.all()}
    missing = {}
    for marketplace in steps.registered_marketplaces():
        declared = steps.get_provider(marketplace).resource
        if declared.key not in rows and declared.key not in missing:
            missing[declared.key] = ResourcePolicy(
                key=declared.key,
                concurrency=declared.concurrency,
                rate_per_minute=declared.rate_per_minute,
            )
    if missing:
        ResourcePolicy.objects.bulk_create(missing.values(), ignore_conflicts=True)
        rows = {p.key: p for p in ResourcePolicy.objects.all()}
    return rows


def _declared_keys() -> set[str]:
    return {steps.get_provider(m).resource.key for m in steps.registered_marketplaces()}


def claimable_jobs(now: datetime):
    return MarketplaceJob.objects.filter(
        status__in=JOB_CLAIMABLE, run_after__lte=now, cancel_requested=False
    )


_STATE_SQL = """
SELECT p.key, p.concurrency, p.rate_per_minute, p.paused,
       (SELECT count(*) FROM {job} j WHERE j.status = 'running' AND j.resource_key = p.key),
       EXISTS (SELECT 1 FROM {job} j
                WHERE j.direct AND j.status = ANY(%s) AND j.resource_key = p.key),
       CASE WHEN p.rate_per_minute IS NULL THEN 0 ELSE
            (SELECT count(*) FROM {run} r
              WHERE r.resource_key = p.key AND r.started_at >= %s) END,
       CASE WHEN p.rate_per_minute IS NULL OR p.rate_per_minute <= 0 THEN 0 ELSE
            (SELECT count(*) FROM {run} r
              WHERE r.resource_key = p.key
                AND r.started_at > %s::timestamptz - make_interval(
                      secs => 60.0 * ceil(p.rate_per_minute / 60.0) / p.rate_per_minute)) END
  FROM {policy} p
 WHERE p.key = ANY(%s) OR %s
"""


def rate_spacing(rate_per_minute: int) -> tuple[int, timedelta]:
    """(burst, window): at most ``burst`` starts in any ``window`` (the SQL above agrees)."""
    burst = max(1, math.ceil(rate_per_minute / 60))
    return burst, timedelta(seconds=60 * burst / max(rate_per_minute, 1))


@dataclass
class ResourceRoom:
    """How many more jobs of a resource may start now, and whether a "run now" holds it."""

    room: int
    reserved: bool


def _rooms(now: datetime, keys: list[str] | None = None) -> dict[str, ResourceRoom]:
    """Room per resource in one query (all policies, or ``keys``)."""
    sql = _STATE_SQL.format(
        job=MarketplaceJob._meta.db_table,
        run=JobRun._meta.db_table,
        policy=ResourcePolicy._meta.db_table,
    )
    params: list[Any] = [
        [str(s) for s in _RESERVING],
        now - RATE_WINDOW,
        now,
        keys or [],
        keys is None,
    ]
    rooms = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for row in cursor.fetchall():
            key, concurrency, rate, paused, running, reserved, recent, recent_short = row
            room = 0 if paused else concurrency - running
            if rate is not None:
                burst = rate_spacing(rate)[0] if rate > 0 else 0
                room = min(room, rate - recent, burst - recent_short)
            rooms[key] = ResourceRoom(max(room, 0), reserved)
    return rooms


def select_jobs_to_claim(*, now: datetime, limit: int) -> list[MarketplaceJob]:
    """Lock and return up to ``limit`` jobs that may start now, in claim order. In a transaction.

    1. One query reads every resource's room; full resources are left out of the search.
    2. ``SELECT … FOR UPDATE SKIP LOCKED`` takes the first candidates in order.
    3. The candidates' policy rows are locked (in key order) and the room re-counted with
       what other workers committed meanwhile; candidates are accepted in order while
       their resource has room. A "run now" job reserves its resource for the rest.
    4. A resource that turned out full (another worker took its last place meanwhile) is
       left out and the search goes on, so a claim never comes back empty while another
       resource's jobs may start (the tenant would be marked idle with work waiting).
    5. Per-key limit: at most one RUNNING job per ``concurrency_key`` (by default the
       product on the marketplace). A job whose key is held — by a running job, or by a job
       accepted earlier in this claim — waits; claims serialise per key on a transaction
       advisory lock (taken in key order, after the policy rows) and re-check what other
       workers committed, so two workers never start two jobs of one key.
    """
    rooms = _rooms(now)
    if not _declared_keys() <= rooms.keys():
        resource_policies()  # first claim since a provider appeared: create its policy row
        rooms = _rooms(now)
    locked: set[str] = set()
    full: set[str] = set()  # closed for the rest of this claim
    share: dict[str, int] = {}
    accepted: list[MarketplaceJob] = []
    held_keys: set[str] = set()  # concurrency keys accepted in this claim
    waiting_ids: list[int] = []  # candidates left waiting for their key
    while len(accepted) < limit:
        closed = full | {key for key, r in rooms.items() if r.room <= 0}
        reserved = [key for key, r in rooms.items() if r.reserved]
        wanted = limit - len(accepted)
        candidates = list(
            claimable_jobs(now)
            .exclude(resource_key__in=closed)
            .filter(Q(direct=True) | ~Q(resource_key__in=reserved))
            .exclude(pk__in=[job.pk for job in accepted] + waiting_ids)
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("-direct", "-priority", "id")
            .only(*CLAIM_FIELDS)[:wanted]
        )
        candidates, waiting = _free_keys(candidates, held_keys)
        waiting_ids.extend(job.pk for job in waiting)
        keys = sorted(
            {job.resource_key for job in candidates if job.resource_key in rooms} - locked
        )
        if keys:
            # Serialise claims per resource, then re-count with what others committed.
            list(
                ResourcePolicy.objects.select_for_update()
                .filter(key__in=keys)
                .order_by("key")
                .values_list("pk")
            )
            rooms.update(_rooms(now, keys))
            locked.update(keys)
            # One worker takes at most its share of a resource's room, so jobs that could run
            # in parallel (eBay: 4 at once) are not queued up behind each other in one worker.
            for key in keys:
                share[key] = max(1, rooms[key].room // slots.drain_slots())
        rejected = False
        for job in candidates:
            room = rooms.get(job.resource_key)
            if room is not None:
                if (
                    room.room <= 0
                    or share[job.resource_key] <= 0
                    or (room.reserved and not job.direct)
                ):
                    full.add(job.resource_key)
                    rejected = True
                    continue
                room.room -= 1
                share[job.resource_key] -= 1
                room.reserved = room.reserved or job.direct
            accepted.append(job)
            if job.concurrency_key:
                held_keys.add(job.concurrency_key)
        if not rejected and not waiting and len(candidates) < wanted:
            break  # nothing more to find
    return accepted


def _free_keys(
    candidates: list[MarketplaceJob], held: set[str]
) -> tuple[list[MarketplaceJob], list[MarketplaceJob]]:
    """Split candidates into those whose concurrency key is free and those that must wait.

    Locks each new key (``pg_advisory_xact_lock``, in key order) before reading which keys
    are running, so a concurrent claim of the same key waits for this one's commit and then
    sees its job RUNNING. Jobs rejected here stay locked by this claim until it commits;
    they are excluded from its later searches.
    """
    keys = sorted({job.concurrency_key for job in candidates if job.concurrency_key} - held)
    busy: set[str] = set()
    if keys:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(%s::text[]) AS k",
                [keys],
            )
        busy = set(
            MarketplaceJob.objects.filter(status=JobStatus.RUNNING, concurrency_key__in=keys)
            .values_list("concurrency_key", flat=True)
            .distinct()
        )
    free, waiting = [], []
    taken = set(held) | busy
    for job in candidates:
        if job.concurrency_key and job.concurrency_key in taken:
            waiting.append(job)
            continue
        if job.concurrency_key:
            taken.add(job.concurrency_key)
        free.append(job)
    return free, waiting


def select_job_to_claim(*, now: datetime) -> MarketplaceJob | None:
    jobs = select_jobs_to_claim(now=now, limit=1)
    return jobs[0] if jobs else None


def next_wake_time(now: datetime) -> datetime | None:
    """When a job now held back by time (backoff, rate window) may start; None if none is.

    Jobs held back by a full or paused resource are woken when a run ends or on resume.
    """
    backoff = MarketplaceJob.objects.filter(
        status__in=JOB_CLAIMABLE, cancel_requested=False, run_after__gt=now
    ).aggregate(t=Min("run_after"))["t"]
    candidates = [backoff] if backoff else []
    for policy in ResourcePolicy.objects.filter(rate_per_minute__isnull=False, paused=False):
        if not claimable_jobs(now).filter(resource_key=policy.key).exists():
            continue
        oldest = (
            JobRun.objects.filter(resource_key=policy.key, started_at__gte=now - RATE_WINDOW)
            .order_by("started_at")
            .values_list("started_at", flat=True)
        )
        starts = list(oldest[: policy.rate_per_minute or 1])
        waits = []  # every limit that holds the resource back; it may start after the last
        if policy.rate_per_minute and len(starts) >= policy.rate_per_minute:
            waits.append(starts[0] + RATE_WINDOW)
        if policy.rate_per_minute:
            # The spacing window: the next start once the oldest of the last `burst` starts
            # inside it has left it.
            burst, window = rate_spacing(policy.rate_per_minute)
            recent = list(
                JobRun.objects.filter(resource_key=policy.key, started_at__gt=now - window)
                .order_by("-started_at")
                .values_list("started_at", flat=True)[:burst]
            )
            if len(recent) >= burst:
                waits.append(recent[-1] + window)
        if waits:
            candidates.append(max(waits))
    return min(candidates) if candidates else None


# --- claiming --------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    job_id: int
    run_id: int
    attempt: int
    batch_id: int | None = None
    # Loaded with the claim (one query for all jobs claimed together); reloaded if absent.
    job: MarketplaceJob | None = field(default=None, compare=False, repr=False)
    tasks: list[MarketplaceTask] | None = field(default=None, compare=False, repr=False)


def claim_next_job(*, worker: str | None = None) -> Claim | None:
    """Claim the job of the current tenant that may start now (see ``select_jobs_to_claim``), or None."""
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
    if marks.tenant_paused(current_schema()):
        return []
    with transaction.atomic():
        jobs = select_jobs_to_claim(now=now, limit=limit)
        if not jobs:
            return []
        return start_runs(jobs, worker=worker or worker_id(), now=now)


# A claim's runs and its jobs' move to RUNNING in one statement: each run's attempt follows
# the job's last one, its ``retry_of`` is the job's current run; the jobs' rows are locked
# by the claim, and ``moved`` counts the jobs that really moved (a second line of defence
# behind those locks). The other columns take their model defaults (``_run_columns``).
_START_RUNS = """
WITH v AS (SELECT * FROM unnest(%(ids)s::bigint[], %(previous)s::bigint[], %(keys)s::text[])
                  AS v(job_id, retry_of_id, resource_key)),
runs AS (
    INSERT INTO {run} ({columns})
    SELECT {values} FROM v
    RETURNING id, job_id, attempt),
moved AS (
    UPDATE {job} AS j SET status = 'running', current_run_id = runs.id,
           started_at = COALESCE(j.started_at, %(now)s)
      FROM runs WHERE j.id = runs.job_id AND j.status = ANY(%(sources)s)
    RETURNING j.id)
SELECT runs.job_id, runs.id, runs.attempt, (SELECT count(*) FROM moved) FROM runs
"""

_RUN_VALUES = {
    "job_id": "v.job_id",
    "attempt": "COALESCE((SELECT max(r.attempt) FROM {run} AS r WHERE r.job_id = v.job_id), 0) + 1",
    "retry_of_id": "v.retry_of_id",
    "worker": "%(worker)s",
    "started_at": "%(now)s",
    "heartbeat_at": "%(now)s",
    "lease_expires_at": "%(lease)s",
    "resource_key": "v.resource_key",
}


@functools.cache
def _run_columns() -> tuple[str, dict[str, Any]]:
    """The runs' insert: the statement, and the parameters of the columns it does not set
    itself, each the model field's default (a field added later is covered too)."""
    run = JobRun._meta.db_table
    columns: list[str] = []
    values: list[str] = []
    defaults: dict[str, Any] = {}
    for f in JobRun._meta.concrete_fields:
        if f.primary_key:
            continue
        columns.append(str(f.column))
        if f.column in _RUN_VALUES:
            values.append(_RUN_VALUES[f.column].format(run=run))
        else:
            name = f"default_{f.column}"
            values.append(f"CAST(%({name})s AS {f.db_type(connection)})")
            defaults[name] = f.get_db_prep_value(f.get_default(), connection)
    sql = _START_RUNS.format(
        run=run, job=MarketplaceJob._meta.db_table, columns=", ".join(columns),
        values=", ".join(values),
    )  # fmt: skip
    return sql, defaults


def start_runs(jobs: list[MarketplaceJob], *, worker: str, now) -> list[Claim]:
    ids = [job.pk for job in jobs]
    for job in jobs:  # the rows are locked by the claim; the table must allow the move
        states.check("job", job.pk, job.status, JobStatus.RUNNING)
    sql, defaults = _run_columns()
    params = {
        **defaults, "ids": ids, "previous": [job.current_run_id for job in jobs],
        "keys": [job.resource_key for job in jobs], "worker": worker, "now": now,
        "lease": now + timedelta(seconds=conf.get("LEASE_SECONDS")),
        "sources": sorted(JOB_CLAIMABLE),
    }  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if len(rows) != len(ids) or rows[0][3] != len(ids):  # behind the claim's row locks
        raise states.ForbiddenTransition("job", ids, "not claimable", JobStatus.RUNNING)
    started = {job_id: (run_id, attempt) for job_id, run_id, attempt, _moved in rows}
    marks.runs_started(current_schema(), len(jobs))
    tasks_of: dict[int, list[MarketplaceTask]] = {job_id: [] for job_id in ids}
    for task in MarketplaceTask.objects.filter(job_id__in=ids).order_by("job_id", "step_order"):
        tasks_of[task.job_id].append(task)
    started_batches: set[int] = set()
    result = []
    for job in jobs:
        run_id, attempt = started[job.pk]
        events.emit("job_status", status=JobStatus.RUNNING, job_id=job.pk, run_id=run_id,
                    batch_id=job.batch_id, data={"from": job.status, "attempt": attempt})  # fmt: skip
        events.emit("run_started", status=RunStatus.RUNNING, job_id=job.pk, run_id=run_id,
                    batch_id=job.batch_id, data={"attempt": attempt, "worker": worker})  # fmt: skip
        if job.batch_id and job.batch_id not in started_batches:
            started_batches.add(job.batch_id)
            batch_apply_job_moves(job.batch_id, [(job.status, JobStatus.RUNNING)])
        result.append(Claim(job.pk, run_id, attempt, job.batch_id, job, tasks_of[job.pk]))
    return result
