"""Committed scenarios for live tests (sync, or in a worker thread via sync_to_async).

Each helper activates the tenant it is given and restores the caller's schema after.
"""

from __future__ import annotations

from django.db import connection
from django_tenants.utils import tenant_context

from orchestration.models import MarketplaceJob
from orchestration.services import JobSpec, batch_create, jobs_enqueue, run_available_jobs
from tests.engine_providers import MARKETPLACE


def create_batch(tenant, jobs: int = 3, *, action: str = "three", params=None) -> int:
    """A batch of ``jobs`` test jobs, not started yet (subscribe, then start it)."""
    with tenant_context(tenant):
        specs = [
            JobSpec(marketplace=MARKETPLACE, action=action, params=params) for _ in range(jobs)
        ]
        batch = batch_create(name="live", jobs=specs, start=False)
    return batch.pk


def start_batch(tenant, batch_id: int, *, run: bool = True) -> None:
    """Enqueue the batch's jobs and (``run``) run them in this process until none is left."""
    with tenant_context(tenant):
        jobs_enqueue(
            job_ids=list(
                MarketplaceJob.objects.filter(batch_id=batch_id).values_list("pk", flat=True)
            )
        )
        if run:
            run_available_jobs()


def make_staff(tenant, username: str, *, role: str = "admin"):
    """A staff user of ``tenant``: ``admin`` (superuser), ``viewer`` (view permissions only)
    or ``bare`` (is_staff, no permission at all)."""
    from django.apps import apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    from tests.factories import UserFactory

    with tenant_context(tenant):
        user = UserFactory(username=username, is_superuser=role == "admin")
        if role == "viewer":
            # Tests that commit truncate every tenant table, permissions included.
            ContentType.objects.clear_cache()
            create_permissions(apps.get_app_config("orchestration"), verbosity=0)
            user.user_permissions.set(
                Permission.objects.filter(
                    content_type__app_label="orchestration", codename__startswith="view_"
                )
            )
    return user


def login_cookie(tenant, username: str, *, role: str = "admin") -> str:
    """``sessionid=…`` for a staff user of ``tenant`` (the session lives in its schema)."""
    from django.test import Client

    user = make_staff(tenant, username, role=role)
    with tenant_context(tenant):
        client = Client(HTTP_HOST=tenant.get_primary_domain().domain)
        client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def closing_connection(func):
    """``func`` for a thread of its own: closes that thread's database connection after."""

    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        finally:
            connection.close()

    return run


def end_session(tenant, cookie: str) -> None:
    """Log the cookie's session out (what the admin's logout does to it)."""
    from django.contrib.sessions.backends.db import SessionStore

    with tenant_context(tenant):
        SessionStore(cookie.removeprefix("sessionid=")).delete()


def deactivate(tenant, username: str) -> None:
    from django.contrib.auth import get_user_model

    with tenant_context(tenant):
        get_user_model().objects.filter(username=username).update(is_active=False)
