"""Bulk operations: "retry / cancel / run now everything matching this filter" as a row a
worker carries out in chunks (``operations.services``), with its progress and result."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Operation(models.Model):
    class Kind(models.TextChoices):
        RETRY = "retry", "Retry"
        CANCEL = "cancel", "Cancel"
        RUN_NOW = "run_now", "Run now"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    job_filter = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # The jobs it covers: those matching the filter with an id up to ``max_job_id`` (jobs
    # created later are not swept in); ``total`` matched when it was made.
    max_job_id = models.BigIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    skipped_reasons = models.JSONField(default=dict, blank=True)
    cursor = models.BigIntegerField(default=0, help_text="Last job id handled")
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    actor = models.CharField(max_length=150)
    door = models.CharField(max_length=120)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["heartbeat_at"],
                name="operation_active_idx",
                condition=models.Q(status__in=["pending", "running"]),
            )
        ]

    def __str__(self) -> str:
        return f"Operation {self.pk} · {self.kind} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.CANCELLED, self.Status.FAILED)

    @property
    def percent(self) -> int:
        if self.finished and self.status == self.Status.DONE:
            return 100
        return (100 * self.processed) // self.total if self.total else 0


class RetentionPolicy(models.Model):
    """How long a tenant keeps finished work (one row per tenant, pk 1). Empty: forever."""

    jobs_days = models.PositiveIntegerField(
        null=True, blank=True, default=90, help_text="Finished jobs (with their steps and runs)"
    )
    runs_days = models.PositiveIntegerField(
        null=True, blank=True, default=90, help_text="Finished runs of jobs that are kept"
    )
    activity_days = models.PositiveIntegerField(
        null=True, blank=True, default=365,
        help_text="Events: the audit trail, schedule firings, finished bulk operations",
    )  # fmt: skip
    webhook_deliveries_days = models.PositiveIntegerField(
        null=True, blank=True, default=30, help_text="Delivered or failed webhook deliveries"
    )
    uploads_days = models.PositiveIntegerField(
        null=True, blank=True, default=30, help_text="Finished, failed or aborted uploads"
    )
    prune_hour = models.PositiveSmallIntegerField(
        default=3, help_text="Hour of the day (UTC) the nightly prune runs"
    )
    last_pruned_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_result = models.JSONField(default=dict, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "retention settings"
        verbose_name_plural = "retention settings"

    def __str__(self) -> str:
        return "Retention settings"
