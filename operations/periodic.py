"""Operations' part of the operator tick (``scheduler.periodic.operator_tick``)."""

from __future__ import annotations

from scheduler.periodic import _each, tenants_having


def resume_stalled_all_tenants() -> dict[str, int]:
    from operations.services import STALLED_AFTER, operations_resume_stalled

    seconds = int(STALLED_AFTER.total_seconds())
    schemas = tenants_having(
        "operations_operation",
        "status IN ('pending', 'running') AND heartbeat_at < now() - %s * interval '1 second'",
        [seconds],
    )
    return _each(schemas, operations_resume_stalled)
