"""Tenant isolation and provisioning (foundation)."""

import os
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context, schema_exists, tenant_context

from marketplaces.models import Product
from tenants.models import Domain, Tenant
from tests.factories import ProductFactory
from tests.helpers import database_url, staff_client


def test_row_in_tenant_a_is_invisible_from_tenant_b_via_orm(tenant_a, tenant_b):
    with tenant_context(tenant_a):
        ProductFactory(sku="ONLY-IN-A")
        assert Product.objects.filter(sku="ONLY-IN-A").count() == 1
    with tenant_context(tenant_b):
        assert Product.objects.filter(sku="ONLY-IN-A").count() == 0
        assert connection.schema_name == "test_beta"


def test_row_in_tenant_a_is_invisible_from_tenant_b_via_http(tenant_a, tenant_b):
    with tenant_context(tenant_a):
        ProductFactory(sku="ONLY-IN-A", title="Alpha jacket")
        alpha = staff_client(tenant_a, "alpha-staff")
    beta = staff_client(tenant_b, "beta-staff")

    seen_by_alpha = alpha.get("/admin/marketplaces/product/")
    seen_by_beta = beta.get("/admin/marketplaces/product/")
    assert seen_by_alpha.status_code == 200
    assert "ONLY-IN-A" in seen_by_alpha.text
    assert seen_by_beta.status_code == 200
    assert "ONLY-IN-A" not in seen_by_beta.text


def test_staff_of_tenant_a_cannot_use_their_session_on_tenant_b(tenant_a, tenant_b):
    client = staff_client(tenant_a, "only-alpha")
    cookie = client.cookies["sessionid"].value
    beta = Client(HTTP_HOST="beta.localhost")
    beta.cookies["sessionid"] = cookie
    response = beta.get("/admin/marketplaces/product/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_unknown_host_is_not_served(db):
    response = Client(HTTP_HOST="nobody.localhost").get("/admin/")
    assert response.status_code == 404


def test_tenant_admin_does_not_expose_platform_models(tenant_a):
    client = staff_client(tenant_a, "alpha-admin")
    index = client.get("/admin/")
    assert index.status_code == 200
    assert "/admin/tenants/" not in index.text
    assert "/admin/django_q/" not in index.text
    assert client.get("/admin/django_q/ormq/").status_code == 404


class TestCreateTenantCommand:
    @pytest.fixture
    def drop_gamma(self, transactional_db):
        yield
        connection.set_schema_to_public()
        with connection.cursor() as cursor:
            cursor.execute("DROP SCHEMA IF EXISTS test_gamma CASCADE")

    def test_creates_schema_domain_and_staff_and_is_idempotent(self, drop_gamma):
        args = [
            "--name",
            "Gamma",
            "--schema",
            "test_gamma",
            "--domain",
            "gamma.localhost",
            "--username",
            "boss",
            "--password",
            "secret-123",
        ]
        call_command("create_tenant", *args)
        call_command("create_tenant", *args)  # second run: no error, no duplicate
        with schema_context("public"):
            assert Tenant.objects.filter(schema_name="test_gamma").count() == 1
            assert Domain.objects.filter(domain="gamma.localhost").count() == 1
        assert schema_exists("test_gamma")
        with schema_context("test_gamma"):
            from django.contrib.auth import get_user_model

            assert get_user_model().objects.filter(username="boss", is_staff=True).count() == 1

    @pytest.mark.parametrize(
        "schema, domain, expected",
        [
            ("Bad-Name", "ok.localhost", "Invalid schema name 'Bad-Name'"),
            ("public", "ok.localhost", "Invalid schema name 'public'"),
            ("pg_evil", "ok.localhost", "Invalid schema name"),
            ("9starts_with_digit", "ok.localhost", "Invalid schema name"),
            ("fine_schema", "not a domain!", "Invalid domain"),
            ("fine_schema", "alpha.localhost", "already used by tenant 'test_alpha'"),
        ],
    )
    def test_rejects_bad_input_and_creates_nothing(self, tenant_a, schema, domain, expected):
        connection.set_schema_to_public()
        before = (Tenant.objects.count(), Domain.objects.count())
        with pytest.raises(CommandError) as excinfo:
            call_command("create_tenant", "--name", "X", "--schema", schema, "--domain", domain)
        assert expected in str(excinfo.value)
        assert (Tenant.objects.count(), Domain.objects.count()) == before
        assert not schema_exists(schema.lower()) or schema == "public"

    def test_cli_exits_non_zero_with_a_clear_message(self, db):
        env = dict(os.environ, DATABASE_URL=database_url(connection.settings_dict))
        result = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "create_tenant",
                "--name",
                "X",
                "--schema",
                "Bad-Name",
                "--domain",
                "x.localhost",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert result.returncode != 0
        assert "Invalid schema name 'Bad-Name'" in result.stderr
