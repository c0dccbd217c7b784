"""The engine's services: what the doors (admin, CLI, API, dashboard, q2 tasks) call to
change job, task, run and batch state. They write through the engine core
(``orchestration.engine``), which the doors do not import (docs/architecture.md).
"""

from orchestration.engine.claims import claim_next_job
from orchestration.engine.execute import execute_claim, job_execute_now, run_available_jobs
from orchestration.engine.moves import jobs_cancel, jobs_enqueue
from orchestration.engine.recovery import recover_lost_runs
from orchestration.services.batches import batch_cancel, batch_create, batch_resume
from orchestration.services.jobs import (
    JobError,
    JobSpec,
    job_cancel,
    job_create,
    job_retry,
    job_retry_from_step,
    job_set_options,
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
