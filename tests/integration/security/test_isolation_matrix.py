"""Tenant-isolation matrix over every URL door (the table: ``isolation_doors.DOORS``, which
says what each scenario expects), and the platform page from a tenant's session."""

from __future__ import annotations

from dataclasses import replace

import pytest
from django.core.cache import cache
from django.test import Client

from tests.integration.security.isolation_doors import DOORS, MARKER, Door
from tests.integration.security.isolation_world import (
    Caller,
    World,
    body,
    build_world,
    make_caller,
    not_found,
    run_matrix,
)


@pytest.fixture
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def beta_world(tenant_b, fast_password_hashing) -> World:
    return build_world(tenant_b, "beta")


@pytest.fixture
def alpha(tenant_a, fast_password_hashing) -> Caller:
    cache.clear()  # the API throttle counts per caller in the cache
    return make_caller(tenant_a, "alpha")


def test_foreign_ids_are_not_found_and_untouched(alpha, beta_world):
    def check(door: Door) -> str | None:
        before = beta_world.state()
        response = alpha.send(door, beta_world, "alpha.localhost")
        if response.status_code == 403:
            return "403 says the id exists elsewhere"
        if response.status_code >= 500:
            return f"server error {response.status_code}"
        if MARKER in body(response):
            return "beta's data reached alpha"
        if door.aims_at_an_object and not not_found(response, door):
            return f"expected not found, got {response.status_code}: {body(response)[:200]}"
        if beta_world.state() != before:
            return "beta's data changed"
        return None

    run_matrix(DOORS, check)


def test_foreign_host_does_not_accept_the_credentials(alpha, beta_world):
    def check(door: Door) -> str | None:
        before = beta_world.state()
        response = alpha.send(door, beta_world, "beta.localhost")
        if MARKER in body(response):
            return "beta's data reached alpha's caller"
        if door.kind == "api" and response.status_code != 401:
            return f"expected 401, got {response.status_code}"
        if door.kind != "api" and not (
            response.status_code == 302 and "/login/" in response["Location"]
        ):
            return f"expected the login page, got {response.status_code}"
        if beta_world.state() != before:
            return "beta's data changed"
        return None

    run_matrix([replace(d, bug="") for d in DOORS], check)


@pytest.fixture
def alpha_world(tenant_a, alpha) -> World:
    return build_world(tenant_a, "alpha")


def test_a_viewer_cannot_act_but_can_read(alpha, alpha_world):
    def check(door: Door) -> str | None:
        before = alpha_world.state()
        response = alpha.send(door, alpha_world, "alpha.localhost", as_viewer=True)
        if response.status_code >= 500:
            return f"server error {response.status_code}"
        if not door.writes:
            ok = response.status_code == 200
            return None if ok else f"a read answered {response.status_code}"
        if alpha_world.state() != before:
            return "a viewer changed something"
        if door.kind == "api" and (
            response.status_code != 403 or response.json()["error"] != "forbidden"
        ):
            return f"expected 403 forbidden, got {response.status_code}"
        return None

    run_matrix([replace(d, bug="") for d in DOORS], check)


# --- doors that are not a URL with an id ----------------------------------------------------


def test_the_platform_page_is_not_for_tenant_staff(alpha, tenant_a):
    assert alpha.admin.get("/platform/", HTTP_HOST="alpha.localhost").status_code == 404
    cookie = alpha.admin.cookies["sessionid"].value
    public = Client(HTTP_HOST="localhost")
    public.cookies["sessionid"] = cookie
    response = public.get("/platform/")
    assert response.status_code in (302, 403, 404)
    assert MARKER not in body(response)
