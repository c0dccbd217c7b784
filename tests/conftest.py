"""Shared fixtures.

Tenant schemas are expensive (~1 s of migrations each), so two test tenants are
made once per test database (kept by --reuse-db) and each test only activates
one. Transactional tests flush only the public schema, which removes the tenant
rows (not the schemas): the tenant fixtures re-create the row cheaply, and
`clean_tenants` deletes tenant data the test committed.
"""

from __future__ import annotations

import os

import pytest
import pytest_asyncio
from django.conf import settings
from django.db import connection, transaction
from django_tenants.utils import schema_context, tenant_context

from tenants.models import Domain, Tenant
from tenants.services import ensure_public_tenant, provision_tenant

# An operator's ``ORCHESTRATION_*`` variables (lease, retry base, the watchdog's cluster
# name…) must not change what in-process tests see: ``orchestration.conf`` reads the
# environment first. Worker subprocesses get their overrides explicitly (start_cluster).
for _name in [n for n in os.environ if n.startswith("ORCHESTRATION_")]:
    del os.environ[_name]

TEST_TENANTS = {
    "alpha": ("Alpha Test Seller", "test_alpha", "alpha.localhost"),
    "beta": ("Beta Test Seller", "test_beta", "beta.localhost"),
}


def _ensure_tenant(key: str) -> Tenant:
    name, schema, domain = TEST_TENANTS[key]
    with schema_context("public"):
        ensure_public_tenant()
        tenant = Tenant.objects.filter(schema_name=schema).first()
        if tenant is None:
            return provision_tenant(name=name, schema_name=schema, domain=domain).tenant
        Domain.objects.get_or_create(domain=domain, defaults={"tenant": tenant, "is_primary": True})
        return tenant


def truncate_tenant_data(*schemas: str) -> None:
    """Empty tenant schemas' data tables (not migrations, content types, permissions:
    Django caches content types per process, not per schema).

    DELETE, not TRUNCATE: a test leaves a few rows, and TRUNCATE rewrites every table's
    files (~140 ms per schema against ~5 ms). Every foreign key Django makes is DEFERRABLE
    INITIALLY DEFERRED and none crosses schemas, so one transaction deletes in any order.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(%s)"
            " AND tablename NOT IN ('django_migrations', 'django_content_type', 'auth_permission')",
            [list(schemas)],
        )
        tables = [f'"{schema}"."{table}"' for schema, table in cursor.fetchall()]
        if tables:
            # Ids keep counting (no sequence reset): a late live message about an earlier
            # test's job 1 (a worker flushing at exit) must not match this test's job 1.
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            cursor.execute("; ".join(f"DELETE FROM {table}" for table in tables))


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        # An earlier version of this fixture set synchronous_commit off on the test database,
        # and a reused database keeps it: the tests of durable commits expect the default.
        name = connection.settings_dict["NAME"]
        # pytest-django sets up only the databases the collected tests ask for: a module
        # whose tests reach the database only through a module fixture must still ask
        # (``django_db``), or its fixtures would write into the development database.
        assert name == settings.DATABASES["default"]["TEST"]["NAME"], (
            f"not the test database ({name}): mark the tests with django_db"
        )
        if name.startswith("test"):
            with connection.cursor() as cursor:
                quoted = name.replace('"', '""')
                cursor.execute(f'ALTER DATABASE "{quoted}" RESET synchronous_commit')
                cursor.execute("RESET synchronous_commit")
        for key in TEST_TENANTS:
            _ensure_tenant(key)
    # The channel layer (channels-postgres) must talk to the test database too.
    layer = settings.CHANNEL_LAYERS["default"]
    if "NAME" in layer.get("CONFIG", {}):
        layer["CONFIG"]["NAME"] = connection.settings_dict["NAME"]
    from channels.layers import channel_layers

    channel_layers.backends.clear()


def _activate(key: str):
    tenant = _ensure_tenant(key)
    with tenant_context(tenant):
        yield tenant
    connection.set_schema_to_public()


@pytest.fixture
def tenant_a(db):
    """Test tenant alpha (alpha.localhost), active for the test; rolled back after."""
    yield from _activate("alpha")


@pytest.fixture
def tenant_b(db):
    """Test tenant beta (beta.localhost), active for the test; rolled back after."""
    yield from _activate("beta")


def reset_dispatch_state(schemas: list[str]) -> None:
    """Forget the public dispatch state tests that commit leave behind: drain slots held by
    workers stopped mid-drain (in production they expire after a grace period, during which
    fewer drains run: the next test would see fewer workers), queued q2 messages, and the
    tenants' queue rows, and the clusters seen (the next test's count their own workers)."""
    from django_q.models import OrmQ

    from orchestration.engine.slots import forget_presence
    from tenants.models import DrainSlot, QueueCluster, TenantQueue

    connection.set_schema_to_public()
    DrainSlot.objects.update(held_until=None, holder="")
    QueueCluster.objects.all().delete()
    forget_presence()
    TenantQueue.objects.filter(schema_name__in=schemas).delete()
    OrmQ.objects.all().delete()


@pytest.fixture
def clean_tenants(transactional_db):
    """For tests that commit (real workers, sockets): truncate tenant data and reset the
    dispatch state afterwards (fixtures that start workers stop them before this runs)."""
    yield
    schemas = [schema for _name, schema, _domain in TEST_TENANTS.values()]
    truncate_tenant_data(*schemas)
    reset_dispatch_state(schemas)
    connection.set_schema_to_public()


@pytest.fixture
def tx_tenant_a(clean_tenants):
    yield from _activate("alpha")


@pytest.fixture
def tx_tenant_b(clean_tenants):
    yield from _activate("beta")


@pytest_asyncio.fixture
async def release_channel_layer():
    """Async tests that touch the channel layer close its loop-bound connections."""
    yield
    from config.channel_layer import close_channel_layers

    await close_channel_layers()
