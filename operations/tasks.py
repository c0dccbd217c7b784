"""django-q2 entry points: (schema_name, ids) → service."""

from __future__ import annotations

from django_tenants.utils import schema_context


def run_operation(schema_name: str, operation_id: int) -> bool:
    """Run a bulk operation's chunks for a while; send the next task if work remains."""
    from operations.services import operation_enqueue, operation_run

    with schema_context(schema_name):
        more = operation_run(operation_id=operation_id)
    if more:
        operation_enqueue(schema_name, operation_id)
    return more
