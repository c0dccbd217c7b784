"""Tenant isolation beyond URLs with ids: the API throttle's cache keys and the live
socket's subscriptions (``/ws/live/``), by foreign id and on a foreign host."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from django.test import Client
from django_tenants.utils import tenant_context

from api.services import token_create
from tests.integration.security.isolation_doors import MARKER
from tests.integration.security.isolation_world import build_world


@pytest.fixture
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_api_throttle_keys_are_per_tenant(tenant_a, tenant_b, settings, fast_password_hashing):
    """The throttle's cache keys carry the schema: the same token id in two tenants are two
    callers (tenant alpha using up its rate does not throttle beta, and the reverse)."""
    settings.API_RATE_LIMIT = "3/m"
    cache.clear()
    tokens = {}
    for tenant in (tenant_a, tenant_b):
        with tenant_context(tenant):
            token, raw = token_create(name="throttle")
            tokens[tenant.schema_name] = (token.pk, raw)
    statuses_a = [
        Client(HTTP_HOST="alpha.localhost")
        .get("/api/jobs", headers={"Authorization": f"Bearer {tokens['test_alpha'][1]}"})
        .status_code
        for _ in range(4)
    ]
    assert statuses_a == [200, 200, 200, 429]
    beta = Client(HTTP_HOST="beta.localhost").get(
        "/api/jobs", headers={"Authorization": f"Bearer {tokens['test_beta'][1]}"}
    )
    assert beta.status_code == 200
    cache.clear()


# --- the live socket (/ws/live/): subscriptions by id ----------------------------------------

SOCKET_DOORS = [  # (subscription request with the target's ids, what the error names)
    ({"subscribe": "batch", "id": "{batch}"}, "no such batch"),
    ({"subscribe": "job", "id": "{job}"}, "no such job"),
    ({"subscribe": "jobs", "ids": ["{job}"]}, "no such jobs"),
]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_socket_subscriptions_to_foreign_ids_and_hosts(clean_tenants, release_channel_layer):
    from asgiref.sync import sync_to_async

    from tests.conftest import _ensure_tenant
    from tests.integration.live.scenarios import login_cookie
    from tests.integration.live.sockets import close_code, communicator, open_live, subscribe

    alpha_tenant = await sync_to_async(_ensure_tenant)("alpha")
    beta_tenant = await sync_to_async(_ensure_tenant)("beta")
    beta = await sync_to_async(build_world)(beta_tenant, "beta")
    cookie = await sync_to_async(login_cookie)(alpha_tenant, "alpha-socket-admin")

    # Alpha's session on beta's host: refused before any subscription.
    assert await close_code(communicator("beta.localhost", cookie)) == 4403

    # On alpha's host, beta's ids are "no such …", with nothing of beta's in the answer.
    socket = await open_live("alpha.localhost", cookie)
    try:
        for request, wanted in SOCKET_DOORS:
            filled = {
                k: (
                    [int(beta.fill(i)) for i in v]
                    if isinstance(v, list)
                    else int(beta.fill(v))
                    if "{" in str(v)
                    else v
                )
                for k, v in request.items()
            }
            reply = await subscribe(socket, **filled)
            assert reply["type"] == "error" and wanted in reply["error"], (filled, reply)
            assert MARKER not in json.dumps(reply)
    finally:
        await socket.disconnect()
