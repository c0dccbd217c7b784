"""The engine's tables: batches of jobs, their ordered tasks (steps) and runs (attempts).

Statuses are written only by ``orchestration.services`` (guarded UPDATEs that
consult ``orchestration.states``); nothing else assigns ``status``.
"""

from __future__ import annotations

from django.contrib.postgres.indexes import OpClass
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Cast, Upper
from django.utils import timezone

from orchestration.states import BatchStatus, JobStatus, RunStatus, TaskStatus


def _choices(enum) -> list[tuple[str, str]]:
    return [(member.value, member.name.replace("_", " ").capitalize()) for member in enum]


class Batch(models.Model):
    """Jobs started together. Progress counters move with each job's terminal transition."""

    class Mode(models.TextChoices):
        PARALLEL = "parallel", "Parallel"
        SEQUENTIAL = "sequential", "Sequential (stop on failure)"

    Status = BatchStatus

    name = models.CharField(max_length=200)
    mode = models.CharField(max_length=12, choices=Mode.choices, default=Mode.PARALLEL)
    status = models.CharField(
        max_length=12, choices=_choices(BatchStatus), default=BatchStatus.PENDING
    )
    total_jobs = models.PositiveIntegerField(default=0)
    completed_jobs = models.PositiveIntegerField(default=0)
    failed_jobs = models.PositiveIntegerField(default=0)
    cancelled_jobs = models.PositiveIntegerField(default=0)
    skipped_jobs = models.PositiveIntegerField(default=0)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "batches"
        indexes = [
            models.Index(fields=["-created_at"], name="batch_created_idx"),
            models.Index(fields=["status", "-created_at"], name="batch_status_created_idx"),
        ]

    def __str__(self) -> str:
        return f"Batch {self.pk} · {self.name}"

    @property
    def done_jobs(self) -> int:
        return self.completed_jobs + self.failed_jobs + self.cancelled_jobs + self.skipped_jobs

    @property
    def progress_percent(self) -> int:
        """Finished jobs / total, floored: 3 jobs → 0, 33, 66, 100."""
        return (100 * self.done_jobs) // self.total_jobs if self.total_jobs else 0


class MarketplaceJob(models.Model):
    """One action for one product on one marketplace, executed as ordered tasks."""

    class Action(models.TextChoices):
        PUBLISH = "publish", "Publish"
        UPDATE = "update", "Update price/quantity"
        UNPUBLISH = "unpublish", "Unpublish"
        SYNC = "sync", "Sync status"
        IMPORT = "import", "Import"
        UPDATE_QUANTITY = "update_quantity", "Update quantity"
        PLAN = "plan", "Plan a season"

    Status = JobStatus

    # No index of its own: job_batch_sequence_idx (batch, sequence) serves lookups by batch.
    batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs", db_index=False
    )
    sequence = models.PositiveIntegerField(default=0, help_text="Order inside a sequential batch")
    product = models.ForeignKey(
        "marketplaces.Product",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    sku = models.CharField(max_length=64, blank=True, help_text="The product's SKU when created")
    marketplace = models.CharField(max_length=32)
    resource_key = models.CharField(
        max_length=64,
        blank=True,
        help_text="What the job holds while it runs (its provider's resource)",
    )
    action = models.CharField(max_length=16, choices=Action.choices)
    # At most one RUNNING job per key (enforced at claim): by default the product on the
    # marketplace, so two jobs never race on one listing. Empty: no such limit.
    concurrency_key = models.CharField(max_length=128, blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, choices=_choices(JobStatus), default=JobStatus.PENDING)
    priority = models.SmallIntegerField(default=0, help_text="Higher runs first")
    direct = models.BooleanField(default=False, help_text="'Run now' reservation")
    max_retries = models.PositiveSmallIntegerField(default=3)
    retry_count = models.PositiveSmallIntegerField(default=0)
    run_after = models.DateTimeField(default=timezone.now)
    cancel_requested = models.BooleanField(default=False)
    error_message = models.TextField(blank=True)
    result = models.JSONField(null=True, blank=True)
    current_run = models.ForeignKey(
        "JobRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # The claim query: runnable jobs, "run now" first, then priority, FIFO within a priority.
            models.Index(
                F("direct").desc(),
                F("priority").desc(),
                F("id"),
                name="job_claim_idx",
                condition=Q(status__in=[JobStatus.QUEUED, JobStatus.RETRYING]),
            ),
            # Running jobs per resource (limits), and "run now" reservations per resource.
            models.Index(
                fields=["resource_key"],
                name="job_running_resource_idx",
                condition=Q(status=JobStatus.RUNNING),
            ),
            models.Index(
                fields=["concurrency_key"],
                name="job_running_key_idx",
                condition=Q(status=JobStatus.RUNNING) & ~Q(concurrency_key=""),
            ),
            models.Index(
                fields=["resource_key"],
                name="job_direct_resource_idx",
                condition=Q(
                    direct=True,
                    status__in=[JobStatus.QUEUED, JobStatus.RETRYING, JobStatus.RUNNING],
                ),
            ),
            models.Index(fields=["-created_at", "-id"], name="job_created_idx"),
            models.Index(fields=["status", "-created_at"], name="job_status_created_idx"),
            models.Index(fields=["marketplace", "status"], name="job_marketplace_status_idx"),
            models.Index(fields=["batch", "sequence"], name="job_batch_sequence_idx"),
            models.Index(
                fields=["-completed_at"],
                name="job_failed_idx",
                condition=Q(status=JobStatus.FAILED),
            ),
            models.Index(fields=["sku"], name="job_sku_idx"),
            # The admin's SKU-prefix search: istartswith is UPPER(sku::text) LIKE 'X%'.
            models.Index(
                OpClass(
                    Upper(Cast("sku", output_field=models.TextField())), name="text_pattern_ops"
                ),
                name="job_sku_prefix_idx",
            ),
            # The admin's default ordering under its marketplace and action filters.
            models.Index(fields=["marketplace", "-created_at", "-id"], name="job_mkt_created_idx"),
            models.Index(fields=["action", "-created_at", "-id"], name="job_action_created_idx"),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} · {self.marketplace} {self.action} {self.sku}".strip()


class MarketplaceTask(models.Model):
    """One ordered step of a job. One task = one committed transaction."""

    Status = TaskStatus

    # No index of its own: task_unique_step_order (job, step_order) serves lookups by job, and
    # every index is one more write per step.
    job = models.ForeignKey(
        MarketplaceJob, on_delete=models.CASCADE, related_name="tasks", db_index=False
    )
    step_type = models.CharField(max_length=64)
    step_order = models.PositiveSmallIntegerField()
    status = models.CharField(
        max_length=12, choices=_choices(TaskStatus), default=TaskStatus.PENDING
    )
    input = models.JSONField(
        default=dict, blank=True, help_text="Earlier steps' outputs it received"
    )
    output = models.JSONField(null=True, blank=True, help_text="What it produced (remote ids)")
    reused_existing = models.BooleanField(
        default=False, help_text="The effect already existed (idempotence check) and was recorded"
    )
    error_message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_run = models.ForeignKey(
        "JobRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job_id", "step_order"]
        constraints = [
            models.UniqueConstraint(fields=["job", "step_order"], name="task_unique_step_order"),
        ]
        indexes = [
            # Throughput (steps per minute) on the staff dashboard.
            models.Index(
                fields=["completed_at"],
                name="task_completed_idx",
                condition=Q(status=TaskStatus.COMPLETED),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.step_order}. {self.step_type}"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.completed_at:
            return (self.completed_at - self.started_at).total_seconds()
        return None


class JobRun(models.Model):
    """One attempt at a job. ``retry_of`` links attempts into a chain staff can read."""

    class ErrorKind(models.TextChoices):
        RETRYABLE = "retryable", "Retryable"
        PERMANENT = "permanent", "Permanent"
        TIMEOUT = "timeout", "Timeout"
        WORKER_LOST = "worker_lost", "Worker lost"
        CANCELLED = "cancelled", "Cancelled"
        INTERNAL = "internal", "Internal error"

    Status = RunStatus

    # No index of its own: run_unique_attempt (job, attempt) serves lookups by job.
    job = models.ForeignKey(
        MarketplaceJob, on_delete=models.CASCADE, related_name="runs", db_index=False
    )
    attempt = models.PositiveSmallIntegerField()
    retry_of = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retried_by"
    )
    status = models.CharField(max_length=12, choices=_choices(RunStatus), default=RunStatus.RUNNING)
    worker = models.CharField(max_length=120, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(default=timezone.now)
    lease_expires_at = models.DateTimeField()
    error_kind = models.CharField(max_length=12, choices=ErrorKind.choices, blank=True)
    error_message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    failed_step = models.CharField(max_length=64, blank=True)
    steps_completed = models.PositiveSmallIntegerField(default=0)
    # The job's resource, copied at claim: a resource's start rate is counted from its runs
    # alone (run_resource_started_idx) instead of joining every recent run to its job.
    resource_key = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["job_id", "attempt"]
        constraints = [
            models.UniqueConstraint(fields=["job", "attempt"], name="run_unique_attempt"),
        ]
        indexes = [
            models.Index(
                fields=["lease_expires_at"],
                name="run_lease_idx",
                condition=Q(status=RunStatus.RUNNING),
            ),
            models.Index(fields=["-started_at"], name="run_started_idx"),
            models.Index(fields=["resource_key", "-started_at"], name="run_resource_started_idx"),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} (job {self.job_id}, attempt {self.attempt})"


class ResourcePolicy(models.Model):
    """A tenant's limit on a resource its jobs hold (e.g. the Vinted bridge: one at a time).

    Rows are created from the providers' declared defaults the first time they are
    needed; staff edit them in the admin and the dispatcher reads them on every claim,
    so a change applies without a restart.
    """

    key = models.CharField(max_length=64, unique=True)
    concurrency = models.PositiveIntegerField(help_text="Jobs holding this resource at once")
    rate_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Job starts per minute (empty: no rate limit)"
    )
    paused = models.BooleanField(default=False, help_text="Nothing starts while paused")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        verbose_name_plural = "resource policies"

    def __str__(self) -> str:
        return self.key
