"""The scheduler's part of the watchdog's periodic work (``ORCHESTRATION_PERIODIC``): fire
every tenant's due schedules, tenant by tenant (django-q2 schedules would run in the public
schema)."""

from __future__ import annotations

from datetime import datetime

from scheduler.services import schedules_fire_due, tenants_with_due_schedules
from tenants.db import use_public_schema
from tenants.sweeps import each_tenant


def fire_due_all_tenants(now: datetime | None = None) -> dict[str, int]:
    """Fire every tenant's due schedules; returns {schema: slots fired}."""
    use_public_schema()
    return each_tenant(tenants_with_due_schedules(now), lambda: len(schedules_fire_due(now=now)))
