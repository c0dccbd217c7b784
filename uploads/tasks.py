"""django-q2 entry points for uploads. Schedules run in the public schema (PITFALLS): the
schedule fans out one task per tenant, each carrying its schema name."""

from __future__ import annotations

from django_q.tasks import async_task
from django_tenants.utils import schema_context

from tenants.db import use_public_schema
from tenants.models import Tenant
from uploads.services import uploads_expire_stale


def expire_stale_uploads_all_tenants() -> int:
    use_public_schema()
    schemas = list(
        Tenant.objects.exclude(schema_name="public").values_list("schema_name", flat=True)
    )
    for schema in schemas:
        async_task("uploads.tasks.expire_stale_uploads", schema)
    return len(schemas)


def expire_stale_uploads(schema_name: str) -> int:
    with schema_context(schema_name):
        return uploads_expire_stale()
