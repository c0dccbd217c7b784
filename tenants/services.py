"""Tenant provisioning: the one place that creates tenants, domains and their staff."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django_tenants.utils import get_public_schema_name, schema_context, schema_exists

from tenants.models import Domain, Tenant

SCHEMA_RE = re.compile(r"^[a-z][a-z0-9_]{1,61}$")
DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
RESERVED_SCHEMAS = {"public", "information_schema"}


@dataclass(frozen=True)
class ProvisionResult:
    tenant: Tenant
    created_tenant: bool
    created_user: bool
    seconds: float


def validate_tenant_input(*, name: str, schema_name: str, domain: str) -> None:
    """Raise ValidationError (with every problem) before anything is written."""
    errors: dict[str, str] = {}
    if not name.strip():
        errors["name"] = "Name must not be empty."
    if (
        not SCHEMA_RE.match(schema_name)
        or schema_name in RESERVED_SCHEMAS
        or schema_name.startswith("pg_")
    ):
        errors["schema"] = (
            f"Invalid schema name {schema_name!r}: use 2-62 lowercase letters, digits or "
            "underscores, starting with a letter (not 'public' or 'pg_*')."
        )
    if not DOMAIN_RE.match(domain):
        errors["domain"] = (
            f"Invalid domain {domain!r}: expected a host name such as acme.localhost."
        )
    else:
        owner = Domain.objects.filter(domain=domain).select_related("tenant").first()
        if owner is not None and owner.tenant.schema_name != schema_name:
            errors["domain"] = (
                f"Domain {domain!r} is already used by tenant {owner.tenant.schema_name!r}."
            )
    if errors:
        raise ValidationError(errors)


def provision_tenant(
    *,
    name: str,
    schema_name: str,
    domain: str,
    staff_username: str | None = None,
    staff_password: str | None = None,
    superuser: bool = True,
) -> ProvisionResult:
    """Create (or find) a tenant, its primary domain and one staff user. Idempotent.

    Creating the schema runs the tenant migrations (no schema cloning: measured
    slower than plain migrations here).
    """
    validate_tenant_input(name=name, schema_name=schema_name, domain=domain)
    started = time.perf_counter()
    with schema_context(get_public_schema_name()):
        tenant = Tenant.objects.filter(schema_name=schema_name).first()
        created_tenant = tenant is None
        if tenant is None:
            tenant = Tenant(schema_name=schema_name, name=name)
            tenant.save(verbosity=0)  # creates and migrates the schema
        elif not schema_exists(schema_name):
            tenant.create_schema(check_if_exists=True, verbosity=0)
        Domain.objects.get_or_create(domain=domain, defaults={"tenant": tenant, "is_primary": True})
    created_user = False
    if staff_username:
        created_user = ensure_staff_user(
            tenant=tenant, username=staff_username, password=staff_password, superuser=superuser
        )
    return ProvisionResult(tenant, created_tenant, created_user, time.perf_counter() - started)


def ensure_staff_user(
    *, tenant: Tenant, username: str, password: str | None, superuser: bool = True
) -> bool:
    """Create the tenant's staff user if missing; returns True when created."""
    with schema_context(tenant.schema_name), transaction.atomic():
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is not None:
            return False
        user = user_model(username=username, is_staff=True, is_superuser=superuser)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
        return True


PUBLIC_DOMAINS = ("localhost", "127.0.0.1")


def ensure_public_tenant(*, domains: tuple[str, ...] = PUBLIC_DOMAINS) -> Tenant:
    """The public schema's tenant row and its host names (the platform admin lives there)."""
    with schema_context(get_public_schema_name()):
        tenant = Tenant.objects.filter(schema_name=get_public_schema_name()).first()
        if tenant is None:
            tenant = Tenant(schema_name=get_public_schema_name(), name="Platform")
            tenant.save(verbosity=0)
        for i, domain in enumerate(domains):
            Domain.objects.get_or_create(
                domain=domain, defaults={"tenant": tenant, "is_primary": i == 0}
            )
    return tenant


def grant_view_permissions(*, tenant: Tenant, username: str, app_labels: tuple[str, ...]) -> int:
    """Give a tenant user every ``view_*`` permission of the apps (a read-only staff role)."""
    from django.apps import apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Permission

    with schema_context(tenant.schema_name), transaction.atomic():
        for label in app_labels:  # permissions exist once migrations ran; make sure anyway
            create_permissions(apps.get_app_config(label), verbosity=0)
        user = get_user_model().objects.get(username=username)
        perms = Permission.objects.filter(
            content_type__app_label__in=app_labels, codename__startswith="view_"
        )
        user.user_permissions.add(*perms)
        return perms.count()
