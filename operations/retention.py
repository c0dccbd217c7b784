"""Retention: delete finished work older than the tenant's ``RetentionPolicy``, in small
batches (``BATCH`` rows per transaction, rows taken with SKIP LOCKED and re-checked under
their lock), so no lock is held for long and the admin stays fast while it runs. A job is
deleted only when finished and its batch finished; a staff retry racing the prune either
locks the job first (the prune skips it) or finds it gone.

``prune(dry_run=True)`` counts what would go. The nightly prune runs from the operator tick
(``prune_due_all_tenants``) once a day per tenant, at ``prune_hour`` UTC.

django-q2's own task results (the public schema's ``django_q_task``: a row per message a
worker ran, drain messages included) go after ``Q_KEEP_SUCCESS_HOURS`` and
``Q_KEEP_FAILURE_DAYS`` (``prune_queue_results``, from the same tick). q2 prunes them only
with ``save_limit`` > 0, which locks every stored success on each result (settings).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.apps import apps
from django.conf import settings as django_settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django_q.models import Task
from django_q.tasks import async_task

from audit.models import AuditEntry
from operations.models import Operation, RetentionPolicy
from orchestration.models import Batch, JobRun, MarketplaceJob
from orchestration.states import BATCH_TERMINAL, JOB_TERMINAL, RunStatus
from scheduler.models import ScheduleFiring
from tenants.db import current_schema
from tenants.models import Tenant
from tenants.sweeps import each_tenant
from uploads import storage

logger = logging.getLogger(__name__)

BATCH = 500  # rows per transaction
PAUSE = 0.01  # seconds between two batches: other sessions get the rows' pages
KINDS = ("jobs", "runs", "batches", "activity", "webhook_deliveries", "uploads")


def policy() -> RetentionPolicy:
    found, _ = RetentionPolicy.objects.get_or_create(pk=1)
    return found


def _cutoff(days: int | None, now: datetime) -> datetime | None:
    return None if not days else now - timedelta(days=days)


def _candidates(now: datetime, settings: RetentionPolicy) -> dict[str, tuple[QuerySet, str]]:
    """What each kind would delete: (queryset, what it is), for the kinds that are on."""
    out: dict[str, tuple[QuerySet, str]] = {}
    jobs_cut = _cutoff(settings.jobs_days, now)
    if jobs_cut:
        out["jobs"] = (
            MarketplaceJob.objects.filter(status__in=JOB_TERMINAL, completed_at__lt=jobs_cut)
            .filter(Q(batch__isnull=True) | Q(batch__status__in=BATCH_TERMINAL)),
            "finished jobs",
        )  # fmt: skip
        # Batches left with no job, finished long ago.
        out["batches"] = (
            Batch.objects.filter(status__in=BATCH_TERMINAL, completed_at__lt=jobs_cut, jobs__isnull=True),
            "finished batches with no job left",
        )  # fmt: skip
    runs_cut = _cutoff(settings.runs_days, now)
    if runs_cut:
        out["runs"] = (
            JobRun.objects.exclude(status=RunStatus.RUNNING)
            .filter(finished_at__lt=runs_cut)
            .exclude(pk__in=MarketplaceJob.objects.filter(current_run__isnull=False).values("current_run_id")),
            "finished runs (not a job's latest)",
        )  # fmt: skip
    activity_cut = _cutoff(settings.activity_days, now)
    if activity_cut:
        out["activity"] = (AuditEntry.objects.filter(created_at__lt=activity_cut), "audit entries")
        out["schedule_firings"] = (
            ScheduleFiring.objects.filter(fired_at__lt=activity_cut),
            "schedule firings",
        )
        out["operations"] = (
            Operation.objects.filter(finished_at__lt=activity_cut),
            "finished bulk operations",
        )
    hooks_cut = _cutoff(settings.webhook_deliveries_days, now)
    if hooks_cut and apps.is_installed("webhooks"):
        delivery = apps.get_model("webhooks", "WebhookDelivery")
        out["webhook_deliveries"] = (
            delivery.objects.exclude(status="pending").filter(created_at__lt=hooks_cut),
            "delivered or failed webhook deliveries",
        )
    uploads_cut = _cutoff(settings.uploads_days, now)
    if uploads_cut and apps.is_installed("uploads"):
        upload = apps.get_model("uploads", "Upload")
        out["uploads"] = (
            upload.objects.exclude(state="receiving").filter(
                Q(ended_at__lt=uploads_cut) | Q(ended_at__isnull=True, completed_at__lt=uploads_cut)
            ),
            "finished, failed or aborted uploads",
        )
    return out


def _delete_in_batches(
    queryset: QuerySet,
    *,
    deadline: float,
    after_delete: Callable[[list], None] | None = None,
    order: str = "pk",
) -> tuple[int, bool]:
    """Delete in batches, taken in ``order`` (an indexed column), until done or ``deadline``
    (monotonic); returns (deleted, more)."""
    model = queryset.model
    deleted = 0
    while time.monotonic() < deadline:
        with transaction.atomic():
            # Lock a small batch (skipping rows someone holds), re-checked under the lock.
            ids = list(
                queryset.order_by(order).select_for_update(skip_locked=True, of=("self",))
                .values_list("pk", flat=True)[:BATCH]
            )  # fmt: skip
            if not ids:
                return deleted, False
            model.objects.filter(pk__in=ids).delete()
            if after_delete is not None:
                transaction.on_commit(functools.partial(after_delete, ids))
        deleted += len(ids)
        time.sleep(PAUSE)
    return deleted, True


def _remove_upload_files(ids: list) -> None:
    for upload_id in ids:
        try:
            storage.remove_upload_files(upload_id)
        except Exception:
            logger.exception("could not remove the files of upload %s", upload_id)


def prune(
    *, dry_run: bool = False, now: datetime | None = None, seconds: float | None = None
) -> tuple[dict[str, int], bool]:
    """Delete (or with ``dry_run`` count) what this tenant's retention says is too old, for
    at most ``seconds`` (None: until done). Returns ``({kind: count}, more_left)``. Jobs go
    before batches (a batch goes once it has no job left)."""
    now = now or timezone.now()
    deadline = time.monotonic() + (seconds if seconds is not None else 10**9)
    settings = policy()
    candidates = _candidates(now, settings)
    counts: dict[str, int] = {}
    more = False
    for kind, (queryset, _what) in candidates.items():
        if dry_run:
            counts[kind] = queryset.count()
            continue
        if kind == "batches":
            continue  # after the jobs, below
        after = _remove_upload_files if kind == "uploads" else None
        counts[kind], left = _delete_in_batches(queryset, deadline=deadline, after_delete=after)
        more = more or left
    if "batches" in candidates and not dry_run:
        batches = _candidates(now, settings)["batches"][0]
        counts["batches"], left = _delete_in_batches(batches, deadline=deadline)
        more = more or left
    if not dry_run:
        RetentionPolicy.objects.filter(pk=settings.pk).update(last_result=counts)
    return counts, more


def describe() -> dict[str, str]:
    """What each kind is (for the command's table)."""
    return {kind: what for kind, (_qs, what) in _candidates(timezone.now(), policy()).items()}


def prune_is_due(settings: RetentionPolicy, now: datetime) -> bool:
    if now.hour < settings.prune_hour:
        return False
    today = now.replace(hour=settings.prune_hour, minute=0, second=0, microsecond=0)
    return settings.last_pruned_at is None or settings.last_pruned_at < today


def prune_claim_if_due(now: datetime) -> bool:
    """Mark today's prune as taken (one process wins: conditional UPDATE); True if due."""
    settings = policy()
    if not prune_is_due(settings, now):
        return False
    return bool(
        RetentionPolicy.objects.filter(
            pk=settings.pk, last_pruned_at=settings.last_pruned_at
        ).update(last_pruned_at=now)
    )


CHECK_EVERY = 600.0  # seconds between two looks at whose nightly prune is due
_last_check = 0.0


def prune_due_all_tenants(now: datetime | None = None, *, force: bool = False) -> dict[str, int]:
    """The nightly prune: each tenant once a day after its ``prune_hour`` (UTC), as q2
    tasks carrying the schema (a long prune never holds the watchdog's loop)."""
    global _last_check
    if not force and time.monotonic() - _last_check < CHECK_EVERY:
        return {}
    _last_check = time.monotonic()
    now = now or timezone.now()
    schemas = list(
        Tenant.objects.exclude(schema_name="public").values_list("schema_name", flat=True)
    )

    def one() -> int:
        if not prune_claim_if_due(now):
            return 0
        schema = current_schema()
        transaction.on_commit(lambda: async_task("operations.tasks.prune_tenant", schema))
        return 1

    return each_tenant(schemas, one)


QUEUE_RESULTS_SECONDS = 1.0  # at most this long per look: the watchdog's loop waits for it
QUEUE_RESULTS_SOON = 60.0  # seconds to the next look when rows were left (a backlog)
_queue_results_next: float | None = None  # time.monotonic() of the next look


def prune_queue_results(now: datetime | None = None, *, force: bool = False) -> dict[str, int]:
    """Delete django-q2's stored task results: successes older than ``Q_KEEP_SUCCESS_HOURS``,
    failures older than ``Q_KEEP_FAILURE_DAYS`` (0 keeps them), for at most
    ``QUEUE_RESULTS_SECONDS``; looks again after ``CHECK_EVERY`` seconds, or
    ``QUEUE_RESULTS_SOON`` when rows were left. Returns what went."""
    global _queue_results_next
    clock = time.monotonic()
    if not force and _queue_results_next is not None and clock < _queue_results_next:
        return {}
    now = now or timezone.now()
    keep = {
        "q2_successes": (True, timedelta(hours=django_settings.Q_KEEP_SUCCESS_HOURS)),
        "q2_failures": (False, timedelta(days=django_settings.Q_KEEP_FAILURE_DAYS)),
    }
    counts: dict[str, int] = {}
    left = False
    for kind, (success, age) in keep.items():
        if age:
            old = Task.objects.filter(success=success, stopped__lt=now - age)
            counts[kind], more = _delete_in_batches(
                old, deadline=clock + QUEUE_RESULTS_SECONDS, order="stopped"
            )  # oldest first, by the index of tenants/0009
            left = left or more
    _queue_results_next = clock + (QUEUE_RESULTS_SOON if left else CHECK_EVERY)
    return counts
