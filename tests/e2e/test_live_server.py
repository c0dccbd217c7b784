"""/ws/live/ on a real ASGI server (uvicorn, websockets) with events from this process and
from real django-q2 workers, on both channel layers."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from orchestration.services import JobSpec, batch_create
from tests.conftest import _ensure_tenant
from tests.integration.live import slow_provider
from tests.integration.live.layers import LAYER_KINDS, publishing_through, settings_module
from tests.integration.live.scenarios import create_batch, login_cookie, start_batch
from tests.integration.live.servers import (
    PROVIDERS,
    receive,
    receive_until,
    start_server,
    subscribe,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=LAYER_KINDS)
def layer(request):
    with publishing_through(request.param) as kind:
        yield kind


@pytest.fixture(scope="module")
def server(layer, django_db_setup, tmp_path_factory):
    """One server per layer for the module (tests clean their data with clean_tenants)."""
    server = start_server(tmp_path_factory.mktemp(f"uvicorn-{layer}") / "uvicorn.log", kind=layer)
    yield server
    server.stop()


def _is_complete(batch_id):
    return lambda m: m["type"] == "complete" and m["batch_id"] == batch_id


def test_batch_progress_reaches_a_real_server_socket(server, clean_tenants):
    alpha = _ensure_tenant("alpha")
    cookie = login_cookie(alpha, "server-staff")
    batch_id = create_batch(alpha, 4)
    with server.websocket(cookie=cookie) as ws:
        assert receive(ws)["type"] == "hello"
        assert subscribe(ws, subscribe="batch", id=batch_id)["of"] == "batch"
        start_batch(alpha, batch_id)
        received = receive_until(ws, _is_complete(batch_id))
    messages = [m for _, m in received]
    for message in messages:
        assert message["tenant"] == "test_alpha" and message["batch_id"] == batch_id
        assert message["timestamp"] and message["status"] and message["progress"]
    percents = [m["progress"]["percent"] for m in messages if m["type"] == "batch_progress"]
    assert percents == sorted(percents) and percents[-1] == 100
    assert messages[-1]["status"] == "completed"


def test_a_real_server_refuses_anonymous_other_tenants_and_bad_origins(server, clean_tenants):
    alpha, beta = _ensure_tenant("alpha"), _ensure_tenant("beta")
    beta_cookie = login_cookie(beta, "beta-server-staff")
    for cookie in ("", beta_cookie):
        with server.websocket(cookie=cookie) as ws, pytest.raises(ConnectionClosed) as closed:
            receive(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    alpha_cookie = login_cookie(alpha, "alpha-server-staff")
    with pytest.raises(InvalidStatus) as refused:
        server.websocket(cookie=alpha_cookie, origin="http://evil.example.com")
    assert refused.value.response.status_code == 403
    with server.websocket(cookie=alpha_cookie) as ws:
        assert receive(ws)["type"] == "hello"


def test_events_from_real_workers_reach_the_socket(server, layer, start_cluster, monkeypatch):
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", settings_module(layer))
    alpha = _ensure_tenant("alpha")
    cookie = login_cookie(alpha, "worker-watch")
    start_cluster(workers=2, PROVIDER_MODULES=PROVIDERS, DRAIN_SECONDS=5)
    specs = [JobSpec(marketplace=slow_provider.MARKETPLACE, action="publish") for _ in range(6)]
    from django_tenants.utils import tenant_context

    with tenant_context(alpha):
        batch = batch_create(name="workers", jobs=specs, start=False)
    with server.websocket(cookie=cookie) as ws:
        receive(ws)
        subscribe(ws, subscribe="batch", id=batch.pk)
        subscribe(ws, subscribe="overview")
        start_batch(alpha, batch.pk, run=False)  # the cluster runs it
        started = time.monotonic()
        received = receive_until(ws, _is_complete(batch.pk), timeout=90)
    messages = [m for _, m in received]
    percents = [m["progress"]["percent"] for m in messages if m["type"] == "batch_progress"]
    assert percents[-1] == 100 and len(set(percents)) >= 3, percents  # it moved, visibly
    assert percents == sorted(percents)
    assert messages[-1]["status"] == "completed"
    assert {m["tenant"] for m in messages} == {"test_alpha"}
    lags = [arrived - datetime.fromisoformat(m["timestamp"]).timestamp() for arrived, m in received]
    print(
        f"\nlive latency via {layer} (event timestamp → client): "
        f"median {sorted(lags)[len(lags) // 2] * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms "
        f"over {len(lags)} messages; batch of 6 ran in {time.monotonic() - started:.1f} s"
    )
