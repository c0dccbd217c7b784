"""Outbound webhooks: endpoints, the outbox (one delivery row per event and endpoint), attempts.

The outbox row is written by the engine in the same transaction as the transition it
reports (``webhooks.outbox``), so a rolled-back transition sends nothing and a committed
one is never lost. Workers deliver pending rows through the engine's drains
(``webhooks.delivery``). Rows are written only by ``webhooks.outbox``,
``webhooks.delivery`` and ``webhooks.services``.
"""

from __future__ import annotations

import secrets

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils import timezone

SECRET_PREFIX = "whsec_"


class EventType(models.TextChoices):
    JOB_RUN_COMPLETED = "job.run.completed", "job.run.completed"
    JOB_RUN_FAILED = "job.run.failed", "job.run.failed"
    JOB_RUN_SKIPPED = "job.run.skipped", "job.run.skipped"
    BATCH_COMPLETED = "batch.completed", "batch.completed"
    BATCH_PARTIAL = "batch.partial", "batch.partial"
    PING = "ping", "ping"


SUBSCRIBABLE = [t.value for t in EventType if t != EventType.PING]


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


class WebhookEndpoint(models.Model):
    """Where a tenant wants its events sent. ``event_types`` empty = every event type."""

    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    event_types = ArrayField(
        models.CharField(max_length=40, choices=EventType.choices),
        default=list,
        blank=True,
        help_text="Events sent to this endpoint; none selected = all of them",
    )
    active = models.BooleanField(default=True)
    # The signing key. Shown once (at creation or rotation), never again: not in the admin,
    # the API or logs (``__repr__``/``__str__`` leave it out).
    secret = models.CharField(max_length=100, editable=False)
    created_by = models.CharField(max_length=150, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    # Health: set by the first failed attempt after a success, cleared by a success.
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["pk"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return f"Endpoint {self.pk} · {self.url}"

    def __repr__(self) -> str:
        return f"<WebhookEndpoint {self.pk} {self.url!r} active={self.active}>"

    def subscribes(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class WebhookDelivery(models.Model):
    """One event for one endpoint: the outbox row, and its delivery state.

    PENDING rows are due at ``next_attempt_at``; a worker claims one by pushing
    ``next_attempt_at`` to the end of its lease, so a worker killed mid-delivery leaves
    the row to be claimed again when the lease ends (at least once).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    event_id = models.UUIDField(db_index=True)
    event_type = models.CharField(max_length=40, choices=EventType.choices)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.DB_CASCADE, related_name="deliveries"
    )
    # Plain ids, no foreign keys: the engine's deletes never wait on this table.
    job_id = models.BigIntegerField(null=True, blank=True)
    run_id = models.BigIntegerField(null=True, blank=True)
    batch_id = models.BigIntegerField(null=True, blank=True)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Retries stop (FAILED) once they would go past retry_from + RETRY_WINDOW_SECONDS.
    retry_from = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=120, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_latency_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        indexes = [
            # The claim's scan and the tenant's next wake-up: due pending rows only.
            models.Index(
                fields=["next_attempt_at", "id"],
                name="whd_pending_due_idx",
                condition=Q(status="pending"),
            ),
            # Per-job order: "an earlier pending row of this endpoint and job".
            models.Index(
                fields=["endpoint", "job_id", "id"],
                name="whd_pending_job_idx",
                condition=Q(status="pending"),
            ),
            models.Index(fields=["job_id", "id"], name="whd_job_idx"),
            models.Index(fields=["endpoint", "-id"], name="whd_endpoint_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → endpoint {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP attempt of a delivery: what the receiver answered, how long it took."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.DB_CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    response_excerpt = models.TextField(blank=True)
    worker = models.CharField(max_length=120, blank=True)

    class Meta:
        ordering = ["delivery_id", "number", "pk"]
        indexes = [models.Index(fields=["delivery", "number"], name="wha_delivery_idx")]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
