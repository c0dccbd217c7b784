"""Reads for the staff dashboard's panels: queues per resource, throughput, jobs backing
off, run-now reservations, failures and the workers seen through this tenant's runs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max
from django.db.models.functions import TruncMinute
from django.utils import timezone

from orchestration.models import JobRun, MarketplaceJob, MarketplaceTask, ResourcePolicy
from orchestration.states import JobStatus, RunStatus, TaskStatus

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
