from django.db import models
from django.utils import timezone
from django_tenants.models import DomainMixin, TenantMixin


class Tenant(TenantMixin):
    """A seller: one PostgreSQL schema holding its products, jobs and staff users."""

    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    auto_create_schema = True
    auto_drop_schema = False

    class Meta:
        ordering = ["schema_name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.schema_name})"


class Domain(DomainMixin):
    """A host name that routes requests and WebSockets to a tenant."""

    def __str__(self) -> str:
        return self.domain


class TenantQueue(models.Model):
    """The public index of which tenants have work, so dispatch never loops over idle schemas.

    Written by ``orchestration.engine.marks`` only. ``ready_at`` is set when a tenant gets
    runnable jobs and cleared when a worker finds none (guarded by ``signal_seq`` so a
    signal that raced the clearing is not lost); ``next_wake_at`` is the earliest
    ``run_after`` of jobs waiting for a backoff; ``active_runs`` counts RUNNING jobs
    (moved in the same transaction as the run), which the recovery sweep visits.
    """

    schema_name = models.CharField(max_length=63, unique=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    signal_seq = models.BigIntegerField(default=0)
    last_served_at = models.DateTimeField(null=True, blank=True)
    next_wake_at = models.DateTimeField(null=True, blank=True)
    active_runs = models.IntegerField(default=0)
    paused = models.BooleanField(default=False)
    # When the sweep's slow pass last reconciled this tenant: each pass takes the tenants
    # visited least recently (``ORCHESTRATION_SWEEP_TENANTS`` of them).
    swept_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["last_served_at"],
                name="tenantqueue_ready_idx",
                condition=models.Q(ready_at__isnull=False, paused=False),
            ),
            models.Index(
                fields=["next_wake_at"],
                name="tenantqueue_wake_idx",
                condition=models.Q(next_wake_at__isnull=False),
            ),
            models.Index(
                fields=["schema_name"],
                name="tenantqueue_active_idx",
                condition=models.Q(active_runs__gt=0),
            ),
        ]

    def __str__(self) -> str:
        return f"queue of {self.schema_name}"


class DrainSlot(models.Model):
    """One slot per concurrent drain task (capped at the workers of the clusters seen).

    A slot is held until ``held_until``; a drain renews it while it runs and frees it
    when it ends. A drain whose q2 message was lost or whose worker died frees its
    slot by expiry, so nothing needs repairing by hand.
    """

    held_until = models.DateTimeField(null=True, blank=True)
    holder = models.CharField(max_length=120, blank=True)
    # Each enqueued drain message carries the slot's token; a message that comes back
    # after its slot was re-queued (a cluster restarted with it in its local queue, then
    # redelivered by the broker) finds another token and does nothing.
    token = models.CharField(max_length=32, blank=True)
    # When the slot was queued (its first message), when its latest message was sent and
    # how many were sent: a message no worker takes is sent again, less and less often
    # (``orchestration.engine.slots.resend_waiting_drains``).
    queued_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    sends = models.PositiveSmallIntegerField(default=0)

    def __str__(self) -> str:
        return f"drain slot {self.pk}"


class QueueCluster(models.Model):
    """A django-q2 cluster seen working on this database (one ``qcluster`` process, under a
    watchdog or not), so the drain slots add up every machine's workers.

    Written by each worker process when it starts and by each drain when it takes its slot;
    a cluster not seen for ``orchestration.engine.slots.PRESENCE_HORIZON`` no longer counts.
    """

    name = models.CharField(max_length=120, unique=True, help_text="<host>:<sentinel pid>")
    workers = models.PositiveSmallIntegerField()
    seen_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"queue cluster {self.name}"


class WorkerCluster(models.Model):
    """A django-q2 cluster run under a watchdog (``manage.py run_workers``), one row each.

    Written by the watchdog (``orchestration.watchdog``) every tick, and by the cluster's
    drains (``last_progress_at``) when they start and at each tenant turn. The dashboard's
    worker panel, ``/platform/``, ``/healthz`` and ``manage.py workers_health`` read it.
    """

    class State(models.TextChoices):
        STARTING = "starting", "Starting"
        RUNNING = "running", "Running"
        STALLED = "stalled", "Stalled"
        RESTARTING = "restarting", "Restarting"
        STOPPED = "stopped", "Stopped"

    name = models.CharField(max_length=120, unique=True, help_text="<host>:<watchdog pid>")
    host = models.CharField(max_length=100)
    watchdog_pid = models.IntegerField()
    cluster_pid = models.IntegerField(null=True, blank=True)
    workers = models.PositiveSmallIntegerField(default=0)
    state = models.CharField(max_length=12, choices=State.choices, default=State.STARTING)
    reason = models.TextField(blank=True, help_text="Why it is stalled or was last restarted")
    started_at = models.DateTimeField(default=timezone.now)
    cluster_started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(default=timezone.now, help_text="The watchdog's tick")
    last_progress_at = models.DateTimeField(null=True, blank=True)
    last_sweep_at = models.DateTimeField(null=True, blank=True)
    ready_waiting = models.IntegerField(default=0, help_text="Tenants with work ready")
    restart_times = models.JSONField(default=list, blank=True)
    restarts_total = models.IntegerField(default=0)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"cluster {self.name}"
