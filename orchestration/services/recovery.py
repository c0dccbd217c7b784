"""Crash recovery: runs whose lease expired are recorded FAILED ("worker lost") and the
retry policy applies, exactly as if the step had raised a retryable error."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from orchestration.models import JobRun, MarketplaceTask
from orchestration.services import transitions
from orchestration.services.runner import apply_failure_policy, steps_completed_by
from orchestration.states import RunStatus, TaskStatus
from tenants.db import current_schema

logger = logging.getLogger(__name__)


def recover_lost_runs(*, now=None) -> int:
    """In the current tenant: fail every RUNNING run whose lease has expired. Returns how many."""
    from orchestration import dispatch

    now = now or timezone.now()
    recovered = 0
    expired = list(
        JobRun.objects.filter(status=RunStatus.RUNNING, lease_expires_at__lt=now).values_list(
            "pk", flat=True
        )
    )
    for run_id in expired:
        with transaction.atomic():
            # Same lock the worker's fence takes: either it commits first, or we do.
            run = (
                JobRun.objects.select_for_update()
                .filter(pk=run_id, status=RunStatus.RUNNING, lease_expires_at__lt=now)
                .first()
            )
            if run is None:
                continue
            message = (
                f"worker lost: {run.worker or 'unknown worker'} stopped renewing its lease "
                f"(last heartbeat {run.heartbeat_at:%H:%M:%S})"
            )
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
                steps_completed=steps_completed_by(run.pk),
                error_kind=JobRun.ErrorKind.WORKER_LOST, error_message=message,
                failed_step=running_task[1] if running_task else "",
            )  # fmt: skip
            dispatch.runs_finished(current_schema(), 1)
            apply_failure_policy(
                job_id=run.job_id, run_id=run.pk, message=message, retryable=True, retry_after=None,
                event_data={"kind": JobRun.ErrorKind.WORKER_LOST},
            )  # fmt: skip
            recovered += 1
            logger.warning("recovered lost run %s of job %s", run.pk, run.job_id)
    return recovered
