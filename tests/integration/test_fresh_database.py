"""Migrations build a fresh database (DESIGN invariant 10): no dumps, no existing data."""

import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from django.db import connection

from tests.helpers import database_url


def _admin_conninfo(settings_dict) -> str:
    params = {
        "dbname": settings_dict["NAME"],
        "user": settings_dict["USER"],
        "host": settings_dict["HOST"],
    }
    if settings_dict["PORT"]:
        params["port"] = settings_dict["PORT"]
    if settings_dict["PASSWORD"]:
        params["password"] = settings_dict["PASSWORD"]
    return psycopg.conninfo.make_conninfo(**params)


@pytest.fixture
def empty_database(db):
    name = f"fresh_{uuid.uuid4().hex[:10]}"
    conninfo = _admin_conninfo(connection.settings_dict)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name, database_url(dict(connection.settings_dict, NAME=name))
    finally:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _manage(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        env=dict(os.environ, DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_migrate_schemas_builds_public_and_a_new_tenant_on_an_empty_database(empty_database):
    name, url = empty_database
    migrated = _manage(url, "migrate_schemas", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    created = _manage(
        url, "create_tenant", "--name", "Fresh", "--schema", "fresh_seller",
        "--domain", "fresh.localhost", "--username", "staff", "--password", "pw-123456",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr

    conninfo = _admin_conninfo(dict(connection.settings_dict, NAME=name))
    with psycopg.connect(conninfo) as conn:
        public = {
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        tenant = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='fresh_seller'")
        }
        staff = conn.execute(
            "SELECT is_staff FROM fresh_seller.auth_user WHERE username='staff'"
        ).fetchone()
    assert {"tenants_tenant", "tenants_domain", "django_q_ormq", "auth_user"} <= public
    assert {"marketplaces_product", "auth_user", "django_session", "django_admin_log"} <= tenant
    assert "tenants_tenant" not in tenant and "django_q_ormq" not in tenant
    assert staff == (True,)
