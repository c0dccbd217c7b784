"""A plan's live messages from real django-q2 workers through a real ASGI server (uvicorn,
channels-postgres): five plans of two tenants and five users at once, each socket receiving
only its own plan's ``agent_status``, ``progress``, ``complete`` per step, in order, each
with type, timestamp, tenant and job id."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime

import pytest
from django_tenants.utils import tenant_context

from orchestration.services import jobs_enqueue
from planning.params import plan_parameters
from planning.services import plan_start
from tests.conftest import _ensure_tenant
from tests.integration.live.scenarios import login_cookie
from tests.integration.live.servers import receive, receive_until, start_server, subscribe
from tests.integration.planning.conftest import CATEGORY, demo_history

pytestmark = pytest.mark.e2e

STEPS = ["assemble_context", "forecast_demand", "compute_inventory", "push_quantities"]
PLAN_TYPES = {"agent_status", "progress", "complete"}


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("uvicorn-planning") / "uvicorn.log")
    yield server
    server.stop()


def pending_plan(tenant, preset: str = "fast-fashion") -> int:
    """A plan job not queued yet (watch it first), in ``tenant`` with its history."""
    with tenant_context(tenant):
        params = plan_parameters(preset=preset, overrides={"category": CATEGORY})
        return plan_start(params=params, enqueue=False).pk


def enqueue(tenant, job_id: int) -> None:
    with tenant_context(tenant):
        jobs_enqueue(job_ids=[job_id])


def finished(job_id: int):
    return lambda m: m["type"] == "job_status" and m.get("job_id") == job_id and m["status"] in (
        "completed", "failed", "cancelled",
    )  # fmt: skip


def assert_plan_stream(messages: list[dict], *, tenant: str, job_id: int) -> None:
    """The plan's messages: every one with type, timestamp, tenant and job id; per step, in
    step order, ``agent_status``, then ``progress`` (long steps), then ``complete``."""
    assert messages[-1]["status"] == "completed", messages[-1]
    assert {m["tenant"] for m in messages} == {tenant}
    assert {m["job_id"] for m in messages} == {job_id}
    plan = [m for m in messages if m["type"] in PLAN_TYPES]
    for message in plan:
        assert datetime.fromisoformat(message["timestamp"])
    assert [m["step"] for m in plan if m["type"] == "agent_status"] == STEPS
    assert [m["step"] for m in plan if m["type"] == "complete"] == STEPS
    for step in STEPS:
        types = [m["type"] for m in plan if m["step"] == step]
        assert types[0] == "agent_status" and types[-1] == "complete", (step, types)
        assert set(types[1:-1]) <= {"progress"}, (step, types)
    forecast_progress = [m["progress"] for m in plan
                         if m["type"] == "progress" and m["step"] == "forecast_demand"]  # fmt: skip
    assert forecast_progress[-1] == {"done": 8, "total": 8, "percent": 100, "of": "products"}
    stamps = [datetime.fromisoformat(m["timestamp"]) for m in plan]
    assert stamps == sorted(stamps)
    steps_seen = [m["step"] for m in plan]
    assert steps_seen == sorted(steps_seen, key=STEPS.index)  # no step's message out of turn


def test_five_plans_of_two_tenants_stream_in_order_each_to_its_own_watcher(server, start_cluster):
    """Three users of alpha and two of beta each watch their own plan, all running at once
    on a real cluster; job ids of the two tenants may be equal, the groups are not."""
    tenants = {"alpha": _ensure_tenant("alpha"), "beta": _ensure_tenant("beta")}
    for tenant in tenants.values():
        with tenant_context(tenant):
            demo_history()
    watchers = [("alpha", "ann"), ("alpha", "bob"), ("alpha", "cem"), ("beta", "dan"),
                ("beta", "eve")]  # fmt: skip
    cookies = {user: login_cookie(tenants[t], user) for t, user in watchers}
    plans = {user: pending_plan(tenants[t], preset) for (t, user), preset in
             zip(watchers, ["fast-fashion", "standard", "luxury", "standard", "fast-fashion"],
                 strict=True)}  # fmt: skip
    start_cluster(workers=2)
    with ExitStack() as stack:
        sockets = {}
        for t, user in watchers:
            ws = stack.enter_context(server.websocket(host=f"{t}.localhost", cookie=cookies[user]))
            sockets[user] = ws
            assert receive(ws)["type"] == "hello"
            assert subscribe(ws, subscribe="job", id=plans[user])["of"] == "job"
        for t, user in watchers:
            enqueue(tenants[t], plans[user])
        with ThreadPoolExecutor(len(watchers)) as pool:
            futures = {
                user: pool.submit(receive_until, sockets[user], finished(plans[user]), timeout=180)
                for _t, user in watchers
            }
            received = {user: [m for _, m in f.result()] for user, f in futures.items()}

    for t, user in watchers:
        assert_plan_stream(received[user], tenant=f"test_{t}", job_id=plans[user])
