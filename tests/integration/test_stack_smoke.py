"""The stack works together: tenant request, q2 task in a tenant, WebSocket round trip."""

import os
import signal
import subprocess
import sys

import pytest
from channels.testing import WebsocketCommunicator
from django.db import connection
from django_q.tasks import async_task, result
from django_tenants.utils import tenant_context

from config.asgi import application
from tests.factories import UserFactory
from tests.helpers import database_url, staff_client


def test_tenant_request_is_served_in_the_tenant(tenant_a):
    client = staff_client(tenant_a, "smoke-staff")
    response = client.get("/admin/")
    assert response.status_code == 200
    assert "Alpha Test Seller" in response.text


def test_q2_task_runs_in_the_schema_it_carries_sync(tenant_a, tenant_b):
    with tenant_context(tenant_b):
        UserFactory(username="only-in-beta")
    connection.set_schema_to_public()  # the task must not rely on the caller's schema
    task_id = async_task("tenants.tasks.describe_tenant", "test_beta", sync=True)
    outcome = result(task_id)
    assert outcome["schema"] == "test_beta"
    assert "only-in-beta" in outcome["users"]


def test_q2_task_runs_in_a_real_qcluster_in_its_tenant(tx_tenant_a, tx_tenant_b):
    with tenant_context(tx_tenant_a):
        UserFactory(username="alpha-user")
    with tenant_context(tx_tenant_b):
        UserFactory(username="beta-user")
    env = dict(os.environ, DATABASE_URL=database_url(connection.settings_dict))
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ids = {
            s: async_task("tenants.tasks.describe_tenant", s) for s in ("test_alpha", "test_beta")
        }
        outcomes = {s: result(task_id, wait=30_000) for s, task_id in ids.items()}
    finally:
        cluster.send_signal(signal.SIGTERM)
        cluster.wait(timeout=30)
    assert outcomes["test_alpha"] == {"schema": "test_alpha", "users": ["alpha-user"]}
    assert outcomes["test_beta"] == {"schema": "test_beta", "users": ["beta-user"]}


def _login_cookie(tenant, username: str) -> bytes:
    client = staff_client(tenant, username)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def _communicator(host: str, cookie: bytes = b"", origin: str | None = None):
    headers = [(b"host", host.encode()), (b"origin", (origin or f"http://{host}").encode())]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, "/ws/whoami/", headers=headers)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_websocket_round_trip_resolves_tenant_and_user(clean_tenants):
    from asgiref.sync import sync_to_async

    from tests.conftest import _ensure_tenant

    alpha = await sync_to_async(_ensure_tenant)("alpha")
    cookie = await sync_to_async(_login_cookie)(alpha, "ws-staff")
    communicator = _communicator("alpha.localhost", cookie)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"hello": 1})
    reply = await communicator.receive_json_from(timeout=5)
    assert reply == {
        "type": "whoami",
        "echo": {"hello": 1},
        "tenant": "test_alpha",
        "user": "ws-staff",
    }
    await communicator.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_websocket_with_tenant_a_session_on_tenant_b_is_anonymous(clean_tenants):
    from asgiref.sync import sync_to_async

    from tests.conftest import _ensure_tenant

    alpha = await sync_to_async(_ensure_tenant)("alpha")
    await sync_to_async(_ensure_tenant)("beta")
    cookie = await sync_to_async(_login_cookie)(alpha, "ws-alpha")
    communicator = _communicator("beta.localhost", cookie)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({})
    reply = await communicator.receive_json_from(timeout=5)
    assert reply["tenant"] == "test_beta"
    assert reply["user"] is None
    await communicator.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_websocket_unknown_host_is_closed(clean_tenants):
    communicator = _communicator("nobody.localhost")
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4404


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_websocket_bad_origin_is_refused(clean_tenants, release_channel_layer):
    communicator = _communicator("alpha.localhost", origin="http://evil.example.com")
    connected, _ = await communicator.connect()
    assert not connected
