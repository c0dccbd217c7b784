"""Typed access to django-tenants' connection state (its wrapper adds these at run time)."""

from django.db import connection


def current_schema() -> str:
    return connection.schema_name  # type: ignore[attr-defined]


def use_public_schema() -> None:
    connection.set_schema_to_public()  # type: ignore[attr-defined]
