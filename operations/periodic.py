"""Operations' part of the watchdog's periodic work (``ORCHESTRATION_PERIODIC``): send the
chunk message of bulk operations again when theirs was lost."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from operations.services import STALLED_AFTER, operations_resume_stalled
from tenants.sweeps import each_tenant, tenants_having


def resume_stalled_all_tenants(now: datetime | None = None) -> dict[str, int]:
    """Every tenant's stalled operations (no chunk for ``STALLED_AFTER``) sent again."""
    stalled_before = (now or timezone.now()) - STALLED_AFTER
    schemas = tenants_having(
        "operations_operation",
        "status IN ('pending', 'running') AND heartbeat_at < %s",
        [stalled_before],
    )
    return each_tenant(schemas, operations_resume_stalled)
