"""Recurring schedules of a tenant and the record of each slot they fired (or skipped).

``next_run_at`` moves only in ``scheduler.services``, in the transaction that creates the
slot's batch; ``ScheduleFiring`` has one row per (schedule, slot) (unique), a second line
behind the row lock that keeps a slot from firing twice.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone as clock


class Schedule(models.Model):
    class Action(models.TextChoices):
        PUBLISH = "publish", "Publish"
        UPDATE = "update", "Update price/quantity"
        SYNC = "sync", "Sync status"
        PLAN = "plan", "Stock plan"

    name = models.CharField(max_length=200)
    action = models.CharField(max_length=16, choices=Action.choices, default=Action.PUBLISH)
    marketplaces = models.JSONField(default=list, help_text="Marketplaces to run on")
    plan = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            'Stock plan only: a preset and overrides, e.g. {"preset": "standard", "category": '
            '"Jeans"}; each firing plans the season starting the next Monday, and pushes the '
            "quantities to the marketplaces ticked above"
        ),
    )
    all_products = models.BooleanField(default=False)
    skus = models.TextField(blank=True, help_text="Or these products: one SKU per line")
    priority = models.SmallIntegerField(default=0, help_text="Higher runs first")
    sequential = models.BooleanField(
        default=False, help_text="Run the jobs one after another; a failure stops the rest"
    )
    cron = models.CharField(
        max_length=120, blank=True, help_text="Cron expression, e.g. '0 6 * * 1-5'"
    )
    every_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Or every N minutes (instead of a cron expression)"
    )
    timezone = models.CharField(max_length=64, default="UTC")
    active = models.BooleanField(default=True)
    next_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_batch = models.ForeignKey(
        "orchestration.Batch",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    last_outcome = models.CharField(max_length=300, blank=True, editable=False)
    created_by = models.CharField(max_length=150, blank=True, editable=False)
    created_at = models.DateTimeField(default=clock.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_run_at"],
                name="schedule_due_idx",
                condition=models.Q(active=True),
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def when(self) -> str:
        if self.cron:
            return f"cron '{self.cron}' ({self.timezone})"
        return f"every {self.every_minutes} min"


class ScheduleFiring(models.Model):
    """One slot of a schedule: the batch it started, or why it did not."""

    class Outcome(models.TextChoices):
        STARTED = "started", "Started"
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed"

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="firings")
    slot_at = models.DateTimeField()
    fired_at = models.DateTimeField(default=clock.now)
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    batch = models.ForeignKey(
        "orchestration.Batch", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.CharField(max_length=300, blank=True)
    by = models.CharField(max_length=150, blank=True, help_text="Staff who ran it now, if any")

    class Meta:
        ordering = ["-fired_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "slot_at"], name="schedule_slot_once")
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id} @ {self.slot_at:%Y-%m-%d %H:%M} {self.outcome}"
