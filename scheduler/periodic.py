"""The operator's periodic work, run tenant by tenant by the watchdog (``manage.py
run_workers``, outside the django-q2 cluster; django-q2 schedules would run in the public
schema): fire due schedules, pick up bulk operations whose chunk message was lost, and the
nightly prune. Each tenant runs alone: one failing tenant is logged and skipped."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import connection
from django_tenants.utils import schema_context

from orchestration.dispatch import DATABASE_LOST
from tenants.db import use_public_schema

logger = logging.getLogger(__name__)


def tenants_having(table: str, condition: str, params: list[Any]) -> list[str]:
    """Tenant schemas whose ``table`` has a row matching ``condition`` (SQL over that
    table's columns, ``%s`` placeholders): one query over every tenant, cheap every few
    seconds (an index serves each branch)."""
    from tenants.models import Tenant

    schemas = list(
        Tenant.objects.exclude(schema_name="public").values_list("schema_name", flat=True)
    )
    if not schemas:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT schemaname FROM pg_tables WHERE tablename = %s AND schemaname = ANY(%s)",
            [table, schemas],
        )
        present = sorted(row[0] for row in cursor.fetchall())
        if not present:
            return []
        quote = connection.ops.quote_name
        parts = [
            f"SELECT %s WHERE EXISTS (SELECT 1 FROM {quote(s)}.{quote(table)} WHERE {condition})"
            for s in present
        ]
        values: list[Any] = []
        for s in present:
            values += [s, *params]
        cursor.execute(" UNION ALL ".join(parts), values)
        return [row[0] for row in cursor.fetchall()]


def _each(schemas: list[str], action: Callable[[], int]) -> dict[str, int]:
    done: dict[str, int] = {}
    for schema in schemas:
        try:
            with schema_context(schema):
                count = action()
            if count:
                done[schema] = count
        except DATABASE_LOST:
            raise
        except Exception:
            logger.exception("operator tick failed for tenant %s", schema)
        finally:
            use_public_schema()
    return done


def fire_due_all_tenants(now: datetime | None = None) -> dict[str, int]:
    """Fire every tenant's due schedules; returns {schema: slots fired}."""
    from scheduler.services import schedules_fire_due, tenants_with_due_schedules

    use_public_schema()
    return _each(tenants_with_due_schedules(now), lambda: len(schedules_fire_due(now=now)))


def operator_tick(now: datetime | None = None) -> dict[str, dict[str, int]]:
    """Everything periodic of the operator's apps (the watchdog calls it every sweep)."""
    from operations.periodic import resume_stalled_all_tenants
    from operations.retention import prune_due_all_tenants

    return {
        "fired": fire_due_all_tenants(now),
        "operations": resume_stalled_all_tenants(),
        "pruned": prune_due_all_tenants(now),
    }
