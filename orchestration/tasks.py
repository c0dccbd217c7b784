"""django-q2 entry points. Each only activates what it needs and calls one service.

Cross-tenant tasks (drain, sweep) start in the public schema and activate each
tenant's schema explicitly; nothing relies on the connection's previous search_path.
"""

from __future__ import annotations

import logging

from django_tenants.utils import schema_context

from orchestration import conf, dispatch
from tenants.db import use_public_schema

logger = logging.getLogger(__name__)


def drain(slot_id: int | None = None) -> dict:
    use_public_schema()
    return dispatch.drain(slot_id)


def sweep() -> dict:
    """Recover lost runs in tenants that have running jobs, free drain slots of workers that
    are gone, then wake drains for due work."""
    from orchestration.services.recovery import recover_lost_runs

    use_public_schema()
    recovered: dict[str, int] = {}
    for schema in dispatch.tenants_with_active_runs():
        with schema_context(schema):
            count = recover_lost_runs()
        if count:
            recovered[schema] = count
    use_public_schema()
    freed = dispatch.free_slots_of_dead_workers()
    wait = dispatch.seconds_until_next_wake()
    if wait is not None and wait <= conf.get("WAKE_AHEAD_SECONDS"):
        dispatch.ensure_drains()  # ready work, or retries (e.g. just recovered) due soon
    return {"recovered": recovered, "freed_slots": freed}


def run_tenant_jobs(schema_name: str, limit: int | None = None) -> int:
    """Run one tenant's runnable jobs in this worker (CLI/diagnostics)."""
    from orchestration.services.runner import run_available_jobs

    with schema_context(schema_name):
        return run_available_jobs(limit=limit)
