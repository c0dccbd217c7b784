"""Periodic work over every tenant: which tenants have something to do, in one query, and
doing it tenant by tenant so that one failing tenant is logged and passed over."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import connection
from django_tenants.utils import schema_context

from tenants.db import DATABASE_LOST, use_public_schema
from tenants.models import Tenant

logger = logging.getLogger(__name__)


def tenants_having(table: str, condition: str, params: list[Any]) -> list[str]:
    """Tenant schemas whose ``table`` has a row matching ``condition`` (SQL over that
    table's columns, ``%s`` placeholders): one query over every tenant, cheap every few
    seconds (an index serves each branch)."""
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


def each_tenant(schemas: list[str], action: Callable[[], int]) -> dict[str, int]:
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
            logger.exception("periodic work failed for tenant %s", schema)
        finally:
            use_public_schema()
    return done
