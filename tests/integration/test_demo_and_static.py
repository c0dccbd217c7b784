"""Demo roles and static files (what `make run` relies on)."""

from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django_tenants.utils import tenant_context

from tenants.services import ensure_staff_user, grant_view_permissions


def test_read_only_role_gets_view_permissions_only(tenant_a):
    ensure_staff_user(tenant=tenant_a, username="looker", password="pw-123456", superuser=False)
    granted = grant_view_permissions(
        tenant=tenant_a, username="looker", app_labels=("orchestration",)
    )
    assert granted >= 4  # batch, job, task, run, resource policy
    with tenant_context(tenant_a):
        user = get_user_model().objects.get(username="looker")
        assert user.has_perm("orchestration.view_marketplacejob")
        assert not user.has_perm("orchestration.change_marketplacejob")
        assert not user.is_superuser


@override_settings(DEBUG=False)
def test_static_files_are_served_without_debug_on_any_known_host(db):
    for host in ("localhost", "alpha.localhost"):
        response = Client(HTTP_HOST=host).get("/static/admin/css/base.css")
        assert response.status_code == 200, host
        assert b"".join(response.streaming_content)[:100]
