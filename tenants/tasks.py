"""django-q2 entry points of the tenants app. Every task carries its schema name."""

from django.contrib.auth import get_user_model
from django.db import connection
from django_tenants.utils import schema_context


def describe_tenant(schema_name: str) -> dict:
    """Diagnostic task (smoke test): which schema ran, and what it sees."""
    with schema_context(schema_name):
        return {
            "schema": connection.schema_name,  # type: ignore[attr-defined]
            "users": sorted(get_user_model().objects.values_list("username", flat=True)),
        }
