"""Typed access to django-tenants' connection state (its wrapper adds these at run time),
and what a lost database connection raises."""

import psycopg
from django.db import InterfaceError, OperationalError, connection

# What a lost database connection raises (a restart, a failover, a network cut): Django's
# wrappers, and psycopg's own errors from the engine's raw prepared statements.
DATABASE_LOST = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def current_schema() -> str:
    return connection.schema_name  # type: ignore[attr-defined]


def use_public_schema() -> None:
    connection.set_schema_to_public()  # type: ignore[attr-defined]


def use_schema(schema_name: str) -> None:
    """Put this thread's connection in ``schema_name``, unless it is there already (a switch
    makes django-tenants send ``SET search_path`` again at the next query)."""
    if connection.schema_name != schema_name:  # type: ignore[attr-defined]
        connection.set_schema(schema_name)  # type: ignore[attr-defined]
