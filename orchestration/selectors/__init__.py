"""Reads for the doors (admin, dashboard, live socket). Services write; selectors only read.

Every function reads the current tenant's schema (``public`` reads the public one):
callers activate it (the socket consumer wraps each call in ``tenant_context``). Query
counts do not grow with the number of rows shown (tests assert it).

- ``snapshots``: what the live socket answers a subscription with;
- ``pages``: the admin's job and batch pages;
- ``dashboard``: the staff dashboard's panels;
- ``public``: the platform roll-up and the worker clusters' health.
"""

from orchestration.selectors.dashboard import (
    WAITING_STATUSES,
    failure_groups,
    queue_depth,
    recent_failures,
    reservations,
    retrying_jobs,
    throughput,
    worker_health,
)
from orchestration.selectors.pages import (
    BATCH_JOBS_PER_PAGE,
    batch_activity,
    batch_jobs_page,
    batch_status_counts,
    job_timeline,
    resource_outlook,
)
from orchestration.selectors.public import HEARTBEAT_STALE_SECONDS, cluster_health, tenant_rollup
from orchestration.selectors.snapshots import (
    ACTIVE_BATCH_STATUSES,
    batch_progress,
    batch_snapshot,
    batch_state,
    job_snapshot,
    job_state,
    jobs_snapshot,
    live_batches,
    overview_snapshot,
)

__all__ = [
    "ACTIVE_BATCH_STATUSES",
    "BATCH_JOBS_PER_PAGE",
    "HEARTBEAT_STALE_SECONDS",
    "WAITING_STATUSES",
    "batch_activity",
    "batch_jobs_page",
    "batch_progress",
    "batch_snapshot",
    "batch_state",
    "batch_status_counts",
    "cluster_health",
    "failure_groups",
    "job_snapshot",
    "job_state",
    "job_timeline",
    "jobs_snapshot",
    "live_batches",
    "overview_snapshot",
    "queue_depth",
    "recent_failures",
    "reservations",
    "resource_outlook",
    "retrying_jobs",
    "tenant_rollup",
    "throughput",
    "worker_health",
]
