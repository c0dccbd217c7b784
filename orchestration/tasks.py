"""django-q2 entry points. Each only activates what it needs and calls one service.

Cross-tenant tasks (drain, sweep) start in the public schema and activate each
tenant's schema explicitly; nothing relies on the connection's previous search_path.
"""

from __future__ import annotations

import logging

from django_tenants.utils import schema_context

from orchestration.engine import dispatch
from orchestration.engine.recovery import sweep_all_tenants
from orchestration.services import run_available_jobs
from tenants.db import use_public_schema

logger = logging.getLogger(__name__)


def drain(slot_id: int | None = None, token: str | None = None) -> dict:
    use_public_schema()
    return dispatch.drain(slot_id, token)


def sweep(reconcile: bool = True) -> dict:
    """The recovery sweep (see ``orchestration.engine.recovery.sweep_all_tenants``). The watchdog runs
    it in its own process every few seconds; this q2 schedule is a second line, and each new
    worker enqueues the quick pass (``reconcile=False``)."""
    return sweep_all_tenants(reconcile=reconcile)


def run_tenant_jobs(schema_name: str, limit: int | None = None) -> int:
    """Run one tenant's runnable jobs in this worker (CLI/diagnostics)."""
    with schema_context(schema_name):
        return run_available_jobs(limit=limit)
