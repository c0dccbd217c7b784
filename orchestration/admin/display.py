"""HTML fragments the engine's admin pages share: status badges, progress bars, job
counts and what happens next to a job. Each carries the ``data-live-*`` attribute
``orchestration/live.js`` updates it by."""

from __future__ import annotations

from typing import Any

from django.utils.html import format_html

from orchestration.models import Batch, MarketplaceJob
from orchestration.states import JOB_CLAIMABLE, JobStatus
from orchestration.templatetags.orchestration_ui import when


def status_badge(status: str, *, job_id: int | None = None, task_id: int | None = None) -> str:
    attrs = ""
    if job_id is not None:
        attrs = format_html(' data-live-job="{}"', job_id)
    elif task_id is not None:
        attrs = format_html(' data-live-task="{}"', task_id)
    return format_html(
        '<span class="live-badge status-{}"{}>{}</span>', status, attrs, status.replace("_", " ")
    )


def progress_bar(batch: Batch, activity: dict[str, Any] | None = None) -> str:
    """Done jobs (the live bar), then the jobs backing off (an orange segment)."""
    percent = batch.progress_percent
    retrying = (activity or {}).get("retrying", 0)
    backing_off = retry_width(batch, activity)
    return format_html(
        '<div class="live-progress" data-live-batch="{}" data-status="{}">'
        '<div class="live-bar" style="width: {}%"></div>'
        '<div class="live-bar-retrying" style="left: {}%; width: {}%" title="{} backing off"></div>'
        '<span class="live-label">{}% ({}/{})</span></div>',
        batch.pk, batch.status, percent, percent, backing_off, retrying,
        percent, batch.done_jobs, batch.total_jobs,
    )  # fmt: skip


def retry_width(batch: Batch, activity: dict[str, Any] | None) -> int:
    """The share of the bar for jobs backing off (after the done part)."""
    retrying = (activity or {}).get("retrying", 0)
    if not batch.total_jobs:
        return 0
    return min(100 - batch.progress_percent, round(100 * retrying / batch.total_jobs))


def job_counts(batch: Batch, activity: dict[str, Any] | None = None) -> str:
    activity = activity or {}
    return format_html(
        '<span class="live-counts" data-live-batch-counts="{}">'
        '<span class="count-running" title="running">▶ <b data-count="running">{}</b></span> '
        '<span class="count-retrying" title="backing off, will retry">↻ <b data-count="retrying">{}</b></span> '
        '<span class="count-completed" title="completed">✓ <b data-count="completed">{}</b></span> '
        '<span class="count-failed" title="failed">✗ <b data-count="failed">{}</b></span> '
        '<span class="count-cancelled" title="cancelled">⊘ <b data-count="cancelled">{}</b></span> '
        '<span class="count-skipped" title="skipped">↷ <b data-count="skipped">{}</b></span></span>',
        batch.pk, activity.get("running", 0), activity.get("retrying", 0), batch.completed_jobs,
        batch.failed_jobs, batch.cancelled_jobs, batch.skipped_jobs,
    )  # fmt: skip


def next_attempt(job: MarketplaceJob) -> str:
    """What happens next to a job: its reservation, its next attempt, or nothing."""
    if job.direct and job.status in (*JOB_CLAIMABLE, JobStatus.RUNNING):
        reserved = format_html(
            '<span class="live-badge status-direct" title="Run now: the next free place on {} is '
            'reserved for this job; other queued work there waits">run now · reserved</span>',
            job.resource_key,
        )
        if job.status == JobStatus.RETRYING:
            return format_html("{} {}", reserved, when(job.run_after, "countdown"))
        return reserved
    if job.status == JobStatus.RETRYING:
        return format_html(
            '<span class="next-attempt">next attempt {}</span>', when(job.run_after, "countdown")
        )
    return ""
