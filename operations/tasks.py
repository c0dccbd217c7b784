"""django-q2 entry points: (schema_name, ids) → service."""

from __future__ import annotations

from django_q.tasks import async_task
from django_tenants.utils import schema_context

from operations.retention import prune
from operations.services import operation_enqueue, operation_run


def run_operation(schema_name: str, operation_id: int) -> bool:
    """Run a bulk operation's chunks for a while; send the next task if work remains."""
    with schema_context(schema_name):
        more = operation_run(operation_id=operation_id)
    if more:
        operation_enqueue(schema_name, operation_id)
    return more


PRUNE_TASK_SECONDS = 120.0  # well under q2's timeout; the task sends itself again if needed


def prune_tenant(schema_name: str) -> dict:
    """The nightly prune of one tenant (``operations.retention``)."""
    with schema_context(schema_name):
        counts, more = prune(seconds=PRUNE_TASK_SECONDS)
    if more:
        async_task("operations.tasks.prune_tenant", schema_name)
    return counts
