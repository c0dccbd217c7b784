"""Crash recovery: runs nobody is running any more are ended, and work nobody was told
about is announced.

- A run whose lease expired, or whose worker process on this host is gone, is
  *recovered*: if it never started a step it is handed back unclaimed (the job is
  QUEUED again, no attempt counted); otherwise it is recorded FAILED ("worker lost")
  and the retry policy applies, exactly as if the step had raised a retryable error.
- ``sweep_all_tenants`` is the periodic sweep. The watchdog (``manage.py run_workers``)
  runs it in its own process, so recovery never waits for the django-q2 cluster it
  recovers; django-q2's schedule runs it too, as a second line.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django_tenants.utils import schema_context

from orchestration import conf, events
from orchestration.engine import marks, slots, transitions
from orchestration.engine.claims import Claim
from orchestration.engine.finish import apply_failure_policy, steps_completed_by
from orchestration.engine.moves import jobs_cancel
from orchestration.engine.session import DATABASE_LOST
from orchestration.models import JobRun, MarketplaceJob, MarketplaceTask
from orchestration.states import JOB_CLAIMABLE, JobStatus, RunStatus, TaskStatus
from tenants.db import current_schema, use_public_schema
from webhooks.delivery import next_due as webhook_next_due

logger = logging.getLogger(__name__)

RELEASED = "released"
FAILED = "failed"


def recover_run(run_id: int, *, message: str, expired_before: datetime | None = None) -> str | None:
    """End one RUNNING run of the current tenant that no worker is running any more.

    Takes the run's row lock, the same lock a worker's fence takes, so either the worker's
    write commits first or this does. ``expired_before``: only if its lease expired before
    then. Returns ``"released"`` (it never started a step: the job is QUEUED again and no
    attempt is counted), ``"failed"`` (worker lost: the retry policy applies), or None (it
    was not running any more).
    """
    now = timezone.now()
    with transaction.atomic():
        runs = JobRun.objects.select_for_update().filter(pk=run_id, status=RunStatus.RUNNING)
        if expired_before is not None:
            runs = runs.filter(lease_expires_at__lt=expired_before)
        run = runs.first()
        if run is None:
            return None
        if not MarketplaceTask.objects.filter(last_run_id=run.pk).exists():
            _release(run)
            return RELEASED
        running_task = (
            MarketplaceTask.objects.filter(job_id=run.job_id, status=TaskStatus.RUNNING)
            .values_list("pk", "step_type")
            .first()
        )
        if running_task:
            transitions.transition(
                MarketplaceTask, running_task[0], TaskStatus.FAILED,
                error_message="worker lost", completed_at=now,
            )  # fmt: skip
        transitions.transition(
            JobRun, run.pk, RunStatus.FAILED, finished_at=now,
            steps_completed=steps_completed_by(run.pk, run.job_id),
            error_kind=JobRun.ErrorKind.WORKER_LOST, error_message=message,
            failed_step=running_task[1] if running_task else "",
        )  # fmt: skip
        marks.runs_finished(current_schema(), 1)
        apply_failure_policy(
            job_id=run.job_id, run_id=run.pk, message=message, retryable=True, retry_after=None,
            event_data={"kind": JobRun.ErrorKind.WORKER_LOST},
        )  # fmt: skip
    logger.warning("recovered run %s of job %s: %s", run.pk, run.job_id, message)
    return FAILED


def _release(run: JobRun) -> None:
    """Hand a claimed run that never started a step back: the job is QUEUED again with its
    previous run as current, and the run is forgotten (it was no attempt). In the caller's
    transaction, under the run's lock."""
    job = (
        MarketplaceJob.objects.select_for_update()
        .filter(pk=run.job_id)
        .values("batch_id", "cancel_requested")
        .get()
    )
    old = transitions.transition(
        MarketplaceJob, run.job_id, JobStatus.QUEUED, expect=[JobStatus.RUNNING],
        current_run_id=run.retry_of_id, run_after=timezone.now(),
    )  # fmt: skip
    JobRun.objects.filter(pk=run.pk).delete()
    marks.runs_finished(current_schema(), 1)  # also marks the tenant ready again
    events.emit("job_status", status=JobStatus.QUEUED, job_id=run.job_id, batch_id=job["batch_id"],
                data={"from": old, "released": True})  # fmt: skip
    if job["cancel_requested"]:
        # Staff asked it to stop while it waited for its turn: it stops now, not later.
        jobs_cancel(queryset=MarketplaceJob.objects.filter(pk=run.job_id))


def runs_hand_back(claims: Iterable[Claim], *, message: str) -> dict[str, int]:
    """A worker gives back claims it will not finish (its drain's deadline passed, or its
    database connection was lost): unstarted ones are released, interrupted ones fail
    as retryable. In the current tenant."""
    counts = {RELEASED: 0, FAILED: 0}
    for claim in claims:
        outcome = recover_run(claim.run_id, message=message)
        if outcome:
            counts[outcome] += 1
    return counts


def recover_lost_runs(*, now: datetime | None = None) -> int:
    """In the current tenant: recover every RUNNING run whose lease has expired or whose
    worker process on this host is gone. Returns how many."""
    now = now or timezone.now()
    recovered = 0
    rows = list(
        JobRun.objects.filter(status=RunStatus.RUNNING).values_list(
            "pk", "worker", "heartbeat_at", "lease_expires_at"
        )
    )
    for run_id, worker, heartbeat_at, lease_expires_at in rows:
        if lease_expires_at < now:
            message = (
                f"worker lost: {worker or 'unknown worker'} stopped renewing its lease "
                f"(last heartbeat {heartbeat_at:%H:%M:%S})"
            )
            outcome = recover_run(run_id, message=message, expired_before=now)
        elif worker_is_gone(worker):
            message = f"worker lost: {worker} exited (its process is gone)"
            outcome = recover_run(run_id, message=message)
        else:
            continue
        recovered += outcome is not None
    return recovered


def worker_is_gone(worker: str) -> bool:
    """True when ``worker`` ("<host>:<pid>") names a process of this host that is gone."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return not slots.process_alive(int(pid))


def reconcile_tenant(schema_name: str, *, now: datetime | None = None) -> bool:
    """Mark the tenant ready if it has claimable jobs (or due webhook deliveries) but no ready
    mark, and make its next wake-up no later than its earliest backoff: a wake-up lost between a commit and its
    signal, or limits changed without one, cannot leave jobs waiting forever. Returns
    whether it had to mark the tenant ready."""
    now = now or timezone.now()
    with schema_context(schema_name):
        waiting = MarketplaceJob.objects.filter(status__in=JOB_CLAIMABLE, cancel_requested=False)
        due = waiting.filter(run_after__lte=now).exists()
        later = (
            None
            if due
            else waiting.order_by("run_after").values_list("run_after", flat=True).first()
        )
        hooks = webhook_next_due()  # webhook deliveries ride the same drains
        if hooks is not None and hooks <= now:
            due = True
        elif hooks is not None and not due:
            later = hooks if later is None else min(later, hooks)
    use_public_schema()
    return marks.reconcile_marks(schema_name, due=due, wake=later)


def sweep_all_tenants(*, reconcile: bool = True) -> dict:
    """The periodic sweep: recover lost runs in every tenant with running jobs (a failing
    tenant is logged and skipped, never stops the others), free drain slots of workers
    that are gone, re-announce work nobody was told about (``reconcile``: a slice of the
    tenants, see ``SWEEP_TENANTS``), then make sure drains come for what is due. Starts
    and ends in the public schema."""
    use_public_schema()
    recovered: dict[str, int] = {}
    errors: dict[str, str] = {}
    reconciled: list[str] = []

    def each(schemas: Iterable[str], action: Callable[[str], object]) -> None:
        for schema in schemas:
            try:
                with transaction.atomic():  # a failing tenant's writes roll back alone
                    action(schema)
            except DATABASE_LOST:
                raise  # nothing else will work either; the caller reconnects
            except Exception as exc:
                logger.exception("sweep of tenant %s failed", schema)
                errors[schema] = f"{type(exc).__name__}: {exc}"
            finally:
                use_public_schema()

    def recover(schema: str) -> None:
        with schema_context(schema):
            count = recover_lost_runs()
        if count:
            recovered[schema] = count

    active = set(marks.tenants_with_active_runs())
    each(sorted(active), recover)

    def reconcile_one(schema: str) -> None:
        if reconcile_tenant(schema):
            reconciled.append(schema)

    if reconcile:
        # The tenants visited least recently (``SWEEP_TENANTS`` of them): every tenant in
        # turn, at a cost per pass that does not grow with the number of tenants. A drifted
        # running count (TenantQueue.active_runs) must not hide a tenant's lost runs: this
        # slower pass recovers them too.
        schemas = marks.tenants_to_sweep(int(conf.get("SWEEP_TENANTS")))
        each([schema for schema in schemas if schema not in active], recover)
        each(schemas, reconcile_one)
    freed = slots.free_slots_of_dead_workers()
    gone = slots.forget_dead_local_clusters()
    wait = marks.seconds_until_next_wake()
    drains = 0
    if wait is not None and wait <= conf.get("WAKE_AHEAD_SECONDS"):
        drains = slots.ensure_drains()  # ready work, or retries (e.g. just recovered) due soon
    return {"recovered": recovered, "reconciled": reconciled, "freed_slots": freed,
            "clusters_gone": gone, "drains_started": drains, "errors": errors}  # fmt: skip
