"""Reads for the doors (admin, dashboard, live socket). Services write; selectors only read.

Every function reads the current tenant's schema: callers activate it (the socket
consumer wraps each call in ``tenant_context``). Query counts do not grow with the
number of rows shown (tests assert it).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Count, Max, Min, Q
from django.db.models.functions import TruncMinute
from django.utils import timezone

from orchestration.models import Batch, JobRun, MarketplaceJob, MarketplaceTask, ResourcePolicy
from orchestration.states import BatchStatus, JobStatus, RunStatus, TaskStatus

ACTIVE_BATCH_STATUSES = (BatchStatus.PENDING, BatchStatus.RUNNING)


def batch_progress(batch: Batch) -> dict[str, int]:
    """The same progress shape the engine's events carry."""
    return {
        "done": batch.done_jobs,
        "total": batch.total_jobs,
        "percent": batch.progress_percent,
        "completed": batch.completed_jobs,
        "failed": batch.failed_jobs,
        "cancelled": batch.cancelled_jobs,
        "skipped": batch.skipped_jobs,
    }


def batch_state(batch: Batch) -> dict[str, Any]:
    return {
        "batch_id": batch.pk,
        "name": batch.name,
        "status": batch.status,
        "progress": batch_progress(batch),
    }


def live_batches(*, recent: int = 20) -> list[Batch]:
    """Batches a live page shows: every active one (up to 200), then the most recent others.
    One query (the dashboard reads many panels)."""
    latest = Batch.objects.order_by("-created_at").values("pk")[:recent]
    rows = list(
        Batch.objects.filter(Q(status__in=ACTIVE_BATCH_STATUSES) | Q(pk__in=latest)).order_by(
            "-created_at"
        )[: 200 + recent]
    )
    active = [b for b in rows if b.status in ACTIVE_BATCH_STATUSES][:200]
    return active + [b for b in rows if b.status not in ACTIVE_BATCH_STATUSES]


def _stamp(of: str, schema: str, **fields: Any) -> dict[str, Any]:
    return {"type": "snapshot", "of": of, "tenant": schema,
            "timestamp": timezone.now().isoformat(), **fields}  # fmt: skip


def overview_snapshot(schema: str) -> dict[str, Any]:
    return _stamp("overview", schema, batches=[batch_state(b) for b in live_batches()])


def batch_snapshot(schema: str, batch_id: int) -> dict[str, Any] | None:
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None:
        return None
    return _stamp("batch", schema, **batch_state(batch))


def job_state(job: MarketplaceJob) -> dict[str, Any]:
    return {
        "job_id": job.pk,
        "batch_id": job.batch_id,
        "status": job.status,
        "error": job.error_message,
        "retry_count": job.retry_count,
    }


def job_snapshot(schema: str, job_id: int) -> dict[str, Any] | None:
    job = MarketplaceJob.objects.filter(pk=job_id).first()
    if job is None:
        return None
    tasks = [
        {
            "task_id": t.pk,
            "order": t.step_order,
            "step": t.step_type,
            "status": t.status,
            "error": t.error_message,
        }
        for t in MarketplaceTask.objects.filter(job_id=job_id).order_by("step_order")
    ]
    return _stamp("job", schema, **job_state(job), tasks=tasks)


def jobs_snapshot(schema: str, job_ids: Iterable[int]) -> dict[str, Any]:
    """Several jobs at once (a list page's rows); ids of another tenant simply do not exist here."""
    jobs = MarketplaceJob.objects.filter(pk__in=list(job_ids)).only(
        "id", "batch_id", "status", "error_message", "retry_count"
    )
    return _stamp("jobs", schema, jobs=[job_state(j) for j in jobs.order_by("pk")])


# --- admin ----------------------------------------------------------------------------


def job_timeline(job_id: int) -> dict[str, Any]:
    """A job's steps (status, duration, output) and its runs, oldest attempt first. Two queries."""
    tasks = list(MarketplaceTask.objects.filter(job_id=job_id).order_by("step_order"))
    runs = list(JobRun.objects.filter(job_id=job_id).order_by("attempt"))
    attempt_of = {r.pk: r.attempt for r in runs}
    return {
        "tasks": [
            {
                "task": t,
                "duration": t.duration_seconds,
                "remote_ids": _remote_ids(t.output),
                "run_attempt": attempt_of.get(t.last_run_id) if t.last_run_id else None,
            }
            for t in tasks
        ],
        "runs": [
            {
                "run": r,
                # Kept on the run when it ends; counted from the tasks while it runs.
                "steps_done": r.steps_completed
                if r.status != RunStatus.RUNNING
                else sum(
                    1 for t in tasks if t.last_run_id == r.pk and t.status == TaskStatus.COMPLETED
                ),
                "retry_of_attempt": attempt_of.get(r.retry_of_id) if r.retry_of_id else None,
                "duration": (r.finished_at - r.started_at).total_seconds()
                if r.finished_at
                else None,
            }
            for r in reversed(runs)
        ],
    }


def _remote_ids(output: Any) -> list[tuple[str, str]]:
    """The ids a step's output names (``remote_id``, ``listing_id``, ``offer_id`` …)."""
    if not isinstance(output, dict):
        return []
    return [(k, str(v)) for k, v in output.items()
            if (k == "id" or k.endswith("_id") or k.endswith("_ids")) and v not in (None, "")]  # fmt: skip


def batch_status_counts() -> dict[str, int]:
    rows = Batch.objects.order_by().values_list("status").annotate(n=Count("id"))
    return {str(status): n for status, n in rows}


# --- staff dashboard ------------------------------------------------------------------------

WAITING_STATUSES = (JobStatus.QUEUED, JobStatus.RETRYING)


def queue_depth() -> list[dict[str, Any]]:
    """Per resource: jobs waiting (queued or backing off), running against its limit, pending
    in sequential groups, and whether it is paused. One query for counts, one for policies."""
    counts: dict[str, dict[str, int]] = {}
    rows = (
        MarketplaceJob.objects.filter(
            status__in=[*WAITING_STATUSES, JobStatus.RUNNING, JobStatus.PENDING]
        )
        .order_by()
        .values_list("resource_key", "status")
        .annotate(n=Count("id"))
    )
    for key, status, n in rows:
        counts.setdefault(key, {})[status] = n
    policies = {p.key: p for p in ResourcePolicy.objects.all()}
    out = []
    for key in sorted(set(counts) | set(policies)):
        by_status, policy = counts.get(key, {}), policies.get(key)
        out.append(
            {
                "key": key or "(none)",
                "waiting": sum(by_status.get(s, 0) for s in WAITING_STATUSES),
                "retrying": by_status.get(JobStatus.RETRYING, 0),
                "running": by_status.get(JobStatus.RUNNING, 0),
                "pending": by_status.get(JobStatus.PENDING, 0),
                "concurrency": policy.concurrency if policy else None,
                "rate_per_minute": policy.rate_per_minute if policy else None,
                "paused": bool(policy and policy.paused),
            }
        )
    return out


def throughput(*, now: datetime | None = None, minutes: int = 60) -> dict[str, Any]:
    """Steps completed and runs failed per minute over the last ``minutes``; failure rate."""
    now = now or timezone.now()
    since = (now - timedelta(minutes=minutes - 1)).replace(second=0, microsecond=0)
    steps = dict(
        MarketplaceTask.objects.filter(status=TaskStatus.COMPLETED, completed_at__gte=since)
        .order_by()
        .annotate(minute=TruncMinute("completed_at"))
        .values_list("minute")
        .annotate(n=Count("id"))
    )
    runs: dict[tuple[datetime, str], int] = {
        (minute, status): n
        for minute, status, n in JobRun.objects.filter(
            started_at__gte=since - timedelta(hours=1), finished_at__gte=since
        )
        .order_by()
        .annotate(minute=TruncMinute("finished_at"))
        .values_list("minute", "status")
        .annotate(n=Count("id"))
    }
    buckets = [since + timedelta(minutes=i) for i in range(minutes)]
    step_counts = [steps.get(b, 0) for b in buckets]
    failed = [runs.get((b, RunStatus.FAILED), 0) for b in buckets]
    finished = sum(runs.values())
    return {
        "minutes": buckets,
        "steps": step_counts,
        "failed_runs": failed,
        "steps_total": sum(step_counts),
        "steps_per_minute": round(sum(step_counts) / minutes, 1),
        "runs_finished": finished,
        "runs_failed": sum(failed),
        "failure_rate": round(100 * sum(failed) / finished, 1) if finished else 0.0,
    }


def retrying_jobs(*, limit: int = 20, total: int | None = None) -> dict[str, Any]:
    """Jobs backing off before their next automatic attempt, the soonest first (the
    dashboard's Retrying panel), and how many there are (``total`` when the caller counted
    them already, e.g. from ``queue_depth()``)."""
    waiting = MarketplaceJob.objects.filter(status=JobStatus.RETRYING)
    jobs = list(waiting.order_by("run_after", "id")[:limit])
    if total is None:
        total = len(jobs) if len(jobs) < limit else waiting.count()
    return {"jobs": jobs, "total": total}


def reservations(*, limit: int = 50) -> dict[str, list[MarketplaceJob]]:
    """ "Run now" jobs still holding their resource's reservation, by resource key."""
    by_key: dict[str, list[MarketplaceJob]] = {}
    for job in (
        MarketplaceJob.objects.filter(
            direct=True, status__in=[*WAITING_STATUSES, JobStatus.RUNNING]
        )
        .only("id", "sku", "status", "resource_key", "run_after")
        .order_by("id")[:limit]
    ):
        by_key.setdefault(job.resource_key, []).append(job)
    return by_key


def resource_outlook(resource_key: str) -> dict[str, Any]:
    """How busy a resource is now: what "Run now" tells staff will happen."""
    policy = ResourcePolicy.objects.filter(key=resource_key).first()
    running = MarketplaceJob.objects.filter(
        status=JobStatus.RUNNING, resource_key=resource_key
    ).count()
    return {
        "key": resource_key,
        "running": running,
        "concurrency": policy.concurrency if policy else None,
        "paused": bool(policy and policy.paused),
        "full": bool(policy and running >= policy.concurrency),
    }


def batch_activity(batch_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Per batch: jobs running, jobs backing off and the soonest next attempt. One query
    over the running and retrying jobs alone (partial indexes), whatever the batch sizes."""
    ids = list(batch_ids)
    if not ids:
        return {}
    rows = (
        MarketplaceJob.objects.filter(
            batch_id__in=ids, status__in=[JobStatus.RUNNING, JobStatus.RETRYING]
        )
        .order_by()
        .values("batch_id")
        .annotate(
            running=Count("id", filter=Q(status=JobStatus.RUNNING)),
            retrying=Count("id", filter=Q(status=JobStatus.RETRYING)),
            next_attempt_at=Min("run_after", filter=Q(status=JobStatus.RETRYING)),
        )
    )
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        values: dict[str, Any] = dict(row)
        out[values.pop("batch_id")] = values
    return out


BATCH_JOBS_PER_PAGE = 50


def batch_jobs_page(batch_id: int, page: Any = 1) -> Page:
    """One page of a batch's jobs in their order (the (batch, sequence) index)."""
    jobs = MarketplaceJob.objects.filter(batch_id=batch_id).order_by("sequence", "id")
    return Paginator(jobs, BATCH_JOBS_PER_PAGE).get_page(page)


def failure_groups(*, hours: int = 24, limit: int = 8) -> list[dict[str, Any]]:
    """Jobs failed for good in the last ``hours``, grouped by error message, most first
    (the partial index on failed jobs by completion serves the range)."""
    since = timezone.now() - timedelta(hours=hours)
    rows = (
        MarketplaceJob.objects.filter(status=JobStatus.FAILED, completed_at__gte=since)
        .order_by()
        .values("error_message")
        .annotate(n=Count("id"), last=Max("completed_at"))
        .order_by("-n", "-last")[:limit]
    )
    return [dict(row) for row in rows]


def recent_failures(*, limit: int = 20) -> list[MarketplaceJob]:
    return list(
        MarketplaceJob.objects.filter(status=JobStatus.FAILED)
        .select_related("batch")
        .order_by("-completed_at")[:limit]
    )


def worker_health(*, now: datetime | None = None, window_minutes: int = 10) -> dict[str, Any]:
    """Workers seen through this tenant's runs: running now (heartbeats), recently active,
    and runs whose lease expired (a lost worker the sweep will recover)."""
    now = now or timezone.now()
    since = now - timedelta(minutes=window_minutes)
    workers: dict[str, dict[str, Any]] = {}
    for worker, running, heartbeat in (
        JobRun.objects.filter(status=RunStatus.RUNNING)
        .order_by()
        .values_list("worker")
        .annotate(n=Count("id"), beat=Max("heartbeat_at"))
    ):
        workers[worker] = {"worker": worker, "running": running, "last_heartbeat": heartbeat,
                           "runs_recent": 0}  # fmt: skip
    for worker, runs, last_start in (
        JobRun.objects.filter(started_at__gte=since)
        .order_by()
        .values_list("worker")
        .annotate(n=Count("id"), last=Max("started_at"))
    ):
        row = workers.setdefault(worker, {"worker": worker, "running": 0, "last_heartbeat": None})
        row["runs_recent"] = runs
        row["last_heartbeat"] = max(filter(None, [row["last_heartbeat"], last_start]))
    for row in workers.values():
        beat = row["last_heartbeat"]
        row["seconds_since"] = round((now - beat).total_seconds()) if beat else None
    lost = JobRun.objects.filter(status=RunStatus.RUNNING, lease_expires_at__lt=now).count()
    return {
        "workers": sorted(workers.values(), key=lambda r: r["worker"]),
        "lost_runs": lost,
        "window_minutes": window_minutes,
    }


# --- platform (public schema: every tenant, numbers only) ----------------------------------


def tenant_rollup(schemas: list[str], *, now: datetime | None = None) -> dict[str, dict[str, int]]:
    """Waiting, running and failed-in-24h job counts per tenant schema, in one query.

    Reads each schema's job table by qualified name (no search_path switching); schemas
    whose table does not exist (yet) are left out.
    """
    from django.db import connection

    if not schemas:
        return {}
    now = now or timezone.now()
    table = MarketplaceJob._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s FROM unnest(%s::text[]) AS s WHERE to_regclass(quote_ident(s) || '.' || %s) IS NOT NULL",
            [schemas, table],
        )
        present = [row[0] for row in cursor.fetchall()]
        if not present:
            return {}
        parts, params = [], []
        for schema in present:
            qualified = f"{connection.ops.quote_name(schema)}.{connection.ops.quote_name(table)}"
            parts.append(
                f"SELECT %s, (SELECT count(*) FROM {qualified} WHERE status IN (%s, %s)),"
                f" (SELECT count(*) FROM {qualified} WHERE status = %s),"
                f" (SELECT count(*) FROM {qualified} WHERE status = %s AND completed_at >= %s)"
            )
            params += [schema, JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.RUNNING,
                       JobStatus.FAILED, now - timedelta(hours=24)]  # fmt: skip
        cursor.execute(" UNION ALL ".join(parts), params)
        return {
            schema: {"waiting": waiting, "running": running, "failed_24h": failed}
            for schema, waiting, running, failed in cursor.fetchall()
        }


# --- worker clusters (public: every watchdog's row) ----------------------------------------

HEARTBEAT_STALE_SECONDS = 15  # a watchdog ticks every second: 15 s of silence = gone


def cluster_health(*, now: datetime | None = None) -> dict[str, Any]:
    """Every worker cluster run by a watchdog (``manage.py run_workers``): alive, last
    progress, ready work waiting, restarts in the last hour, and a verdict with its reason.

    ``ok`` is False when no cluster is alive, or one is stalled or restarting, or a live
    one's watchdog stopped ticking: what ``/healthz/workers`` and ``workers_health``
    answer non-zero for.
    """
    from tenants.models import WorkerCluster

    now = now or timezone.now()
    hour_ago = now - timedelta(hours=1)
    rows = []
    clusters = list(
        WorkerCluster.objects.filter(heartbeat_at__gte=hour_ago).exclude(
            state="stopped", stopped_at__lt=hour_ago
        )
    )
    for cluster in clusters:
        beat_age = (now - cluster.heartbeat_at).total_seconds()
        restarts = [t for t in cluster.restart_times if datetime.fromisoformat(t) >= hour_ago]
        stopped = cluster.state == "stopped"
        alive = not stopped and beat_age <= HEARTBEAT_STALE_SECONDS
        replaced = any(
            other.host == cluster.host and other.started_at > cluster.heartbeat_at
            for other in clusters
        )
        if stopped:
            verdict, reason = "stopped", "stopped by its operator"
        elif not alive and replaced:
            verdict, reason = "replaced", "its watchdog died; a newer one runs on this host"
        elif not alive:
            verdict, reason = "down", f"its watchdog has not reported for {beat_age:.0f}s"
        elif cluster.state in ("stalled", "restarting"):
            verdict, reason = cluster.state, cluster.reason
        else:
            verdict, reason = "ok", ""
        progress = cluster.last_progress_at
        rows.append({
            "name": cluster.name, "host": cluster.host, "workers": cluster.workers,
            "state": cluster.state, "verdict": verdict, "reason": reason, "alive": alive,
            "cluster_pid": cluster.cluster_pid, "heartbeat_seconds": round(beat_age, 1),
            "last_progress_at": progress,
            "progress_seconds": round((now - progress).total_seconds(), 1) if progress else None,
            "ready_waiting": cluster.ready_waiting, "restarts_last_hour": len(restarts),
            "last_restart_reason": cluster.reason if restarts else "",
            "last_sweep_at": cluster.last_sweep_at,
        })  # fmt: skip
    live = [r for r in rows if r["alive"]]
    problems = [r for r in rows if r["verdict"] in ("down", "stalled", "restarting")]
    return {
        "ok": bool(live) and not problems,
        "clusters": rows,
        "problems": [f"{r['name']}: {r['verdict']} ({r['reason']})" for r in problems]
        or ([] if live else ["no worker cluster is running (start manage.py run_workers)"]),
    }
