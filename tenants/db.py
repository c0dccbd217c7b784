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
