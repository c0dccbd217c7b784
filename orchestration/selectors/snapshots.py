"""What the live socket answers a subscription with: snapshots of batches and jobs.

The same shapes the engine's events carry (``batch_progress``), so a page renders a
snapshot and a live message alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Q
from django.utils import timezone

from orchestration.models import Batch, MarketplaceJob, MarketplaceTask
from orchestration.states import BatchStatus

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
