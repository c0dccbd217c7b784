"""Reads for the admin's job and batch pages: a job's timeline, how busy a resource is,
the running and backing-off counts of the batches on a page, a batch's jobs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Count, Min, Q

from orchestration.models import Batch, JobRun, MarketplaceJob, MarketplaceTask, ResourcePolicy
from orchestration.states import JobStatus, RunStatus, TaskStatus


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
