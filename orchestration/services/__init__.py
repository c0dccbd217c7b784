"""The engine's services: the only code that writes job, task, run and batch state.

Doors (admin, CLI, API, dashboard, q2 tasks) import from here.
"""

from orchestration.services.batches import JobSpec, batch_cancel, batch_create, batch_resume
from orchestration.services.jobs import (
    JobError,
    job_cancel,
    job_create,
    job_retry,
    job_retry_from_step,
    job_set_options,
    jobs_cancel,
    jobs_enqueue,
)
from orchestration.services.recovery import recover_lost_runs
from orchestration.services.runner import (
    claim_next_job,
    execute_claim,
    job_execute_now,
    run_available_jobs,
)
from orchestration.services.scheduling import (
    job_run_now,
    resource_pause,
    resource_resume,
    resource_set_limits,
    tenant_pause,
    tenant_resume,
)

__all__ = [
    "JobError",
    "JobSpec",
    "batch_cancel",
    "batch_create",
    "batch_resume",
    "claim_next_job",
    "execute_claim",
    "job_cancel",
    "job_create",
    "job_execute_now",
    "job_retry",
    "job_retry_from_step",
    "job_run_now",
    "job_set_options",
    "jobs_cancel",
    "jobs_enqueue",
    "recover_lost_runs",
    "resource_pause",
    "resource_resume",
    "resource_set_limits",
    "run_available_jobs",
    "tenant_pause",
    "tenant_resume",
]
