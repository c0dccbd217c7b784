"""Login throttling (django-axes) on the tenant admin login: per tenant, per user, per client."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django_tenants.utils import tenant_context

from tests.factories import UserFactory

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_user(tenant, username: str, password: str) -> None:
    with tenant_context(tenant):
        user = UserFactory(username=username, is_superuser=True)
        user.set_password(password)
        user.save()


def login(tenant, username: str, password: str, *, address: str = "10.0.0.1") -> int:
    client = Client(HTTP_HOST=tenant.get_primary_domain().domain, REMOTE_ADDR=address)
    response = client.post(LOGIN, {"username": username, "password": password})
    return response.status_code  # 302 logged in, 200 form again, 429 locked out


def test_repeated_failures_lock_the_user_out_in_that_tenant_only(tenant_a, tenant_b):
    limit = settings.AXES_FAILURE_LIMIT
    make_user(tenant_a, "alice", "right-password-a")
    make_user(tenant_b, "alice", "right-password-b")
    assert login(tenant_a, "alice", "right-password-a") == 302  # it works at first

    statuses = [login(tenant_a, "alice", f"guess-{i}") for i in range(limit)]
    assert statuses[:-1] == [200] * (limit - 1)
    assert statuses[-1] == 429
    # Locked: even the right password is refused now, from any address.
    assert login(tenant_a, "alice", "right-password-a", address="10.9.9.9") == 429
    # The other tenant's alice is another user.
    assert login(tenant_b, "alice", "right-password-b") == 302


def test_one_client_cannot_spray_many_usernames(tenant_a):
    limit = settings.AXES_FAILURE_LIMIT
    make_user(tenant_a, "bob", "bobs-password-1")
    statuses = [login(tenant_a, f"user{i}", "123456", address="10.6.6.6") for i in range(limit)]
    assert statuses[-1] == 429
    assert login(tenant_a, "bob", "bobs-password-1", address="10.6.6.6") == 429
    assert login(tenant_a, "bob", "bobs-password-1", address="10.7.7.7") == 302


def test_a_successful_login_resets_the_count(tenant_a):
    limit = settings.AXES_FAILURE_LIMIT
    make_user(tenant_a, "carol", "carols-password")
    for _ in range(limit - 1):
        assert login(tenant_a, "carol", "wrong") == 200
    assert login(tenant_a, "carol", "carols-password") == 302
    for _ in range(limit - 1):
        assert login(tenant_a, "carol", "wrong") == 200
    assert login(tenant_a, "carol", "carols-password") == 302


def test_behind_the_proxy_the_forwarded_client_counts(tenant_a, settings):
    settings.TRUSTED_PROXY_HOPS = 1
    make_user(tenant_a, "dave", "daves-password")
    client = Client(HTTP_HOST="alpha.localhost", REMOTE_ADDR="10.0.0.254")
    for i in range(settings.AXES_FAILURE_LIMIT):
        # The client claims another address each time; the proxy appends the real one.
        client.post(
            LOGIN,
            {"username": f"x{i}", "password": "p"},
            HTTP_X_FORWARDED_FOR=f"1.1.1.{i}, 9.9.9.9",
        )
    other = Client(HTTP_HOST="alpha.localhost", REMOTE_ADDR="10.0.0.254")
    ok = other.post(
        LOGIN, {"username": "dave", "password": "daves-password"}, HTTP_X_FORWARDED_FOR="8.8.8.8"
    )
    assert ok.status_code == 302  # another client behind the same proxy is not locked
    locked = other.post(
        LOGIN, {"username": "dave", "password": "daves-password"}, HTTP_X_FORWARDED_FOR="9.9.9.9"
    )
    assert locked.status_code == 429
