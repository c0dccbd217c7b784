"""A tenant's planning data: its stores, weekly sales history, and which child batch a plan's
push step created (the push's idempotency key)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from orchestration.models import MarketplaceJob


class Store(models.Model):
    """A shop (or warehouse outlet) whose sales the history records; ``cluster`` groups stores
    that sell alike (the forecast is made per cluster)."""

    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=120)
    cluster = models.CharField(max_length=40, help_text="Stores that sell alike, e.g. urban")
    region = models.CharField(max_length=80, blank=True)
    size_sqm = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} · {self.name} ({self.cluster})"


class WeeklySales(models.Model):
    """Units of one SKU sold in one store in one week (``week`` is that week's Monday)."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="sales")
    sku = models.CharField(max_length=64)
    category = models.CharField(max_length=120)
    week = models.DateField()
    units = models.PositiveIntegerField()

    class Meta:
        verbose_name_plural = "weekly sales"
        ordering = ["week", "sku"]
        constraints = [
            models.UniqueConstraint(fields=["store", "sku", "week"], name="sales_unique_week"),
        ]
        indexes = [models.Index(fields=["category", "week"], name="sales_category_week_idx")]

    def __str__(self) -> str:
        return f"{self.week} {self.sku} @ {self.store_id}: {self.units}"


class PlanPush(models.Model):
    """The child batch of ``update_quantity`` jobs a plan's push step created. One row per plan
    job: a retried push step finds it and creates nothing again."""

    plan_job = models.OneToOneField(
        "orchestration.MarketplaceJob", on_delete=models.CASCADE, related_name="+"
    )
    batch = models.OneToOneField(
        "orchestration.Batch", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    listings = models.JSONField(default=list, help_text="[sku, marketplace, quantity] pushed")
    skipped = models.JSONField(default=list, help_text="[sku, marketplace] with no listing")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return f"push of plan {self.plan_job_id} → batch {self.batch_id}"


class SeasonPlan(MarketplaceJob):
    """The admin's "Plan a season" page: plan jobs are engine jobs (action ``plan``)."""

    class Meta:
        proxy = True
        verbose_name = "season plan"
