"""/ws/live/ in-process (WebsocketCommunicator): who may listen, subscriptions, message flow."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django_tenants.utils import tenant_context

from orchestration import consumers, live
from orchestration.models import Batch
from tests.conftest import _ensure_tenant
from tests.integration.live.scenarios import (
    closing_connection,
    create_batch,
    deactivate,
    end_session,
    login_cookie,
    start_batch,
)
from tests.integration.live.sockets import (
    close_code,
    communicator,
    open_live,
    receive_until,
    subscribe,
    until_control,
)

ALPHA, BETA = "alpha.localhost", "beta.localhost"
pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def _tenants():
    return (
        await sync_to_async(_ensure_tenant)("alpha"),
        await sync_to_async(_ensure_tenant)("beta"),
    )


def _is_complete(batch_id):
    return lambda m: m["type"] == "complete" and m["batch_id"] == batch_id


def _job_ids(tenant, batch_id: int) -> list[int]:
    from django_tenants.utils import tenant_context

    from orchestration.models import MarketplaceJob

    with tenant_context(tenant):
        return list(
            MarketplaceJob.objects.filter(batch_id=batch_id)
            .order_by("pk")
            .values_list("pk", flat=True)
        )


def _overview(schema: str) -> str:
    return live.group_name(schema, "overview")


async def test_anonymous_is_refused(clean_tenants, release_channel_layer):
    await _tenants()
    assert await close_code(communicator(ALPHA)) == 4403


async def test_staff_of_another_tenant_is_refused(clean_tenants, release_channel_layer):
    _alpha, beta = await _tenants()
    beta_cookie = await sync_to_async(login_cookie)(beta, "beta-staff")
    assert await close_code(communicator(ALPHA, beta_cookie)) == 4403
    beta_socket = await open_live(BETA, beta_cookie)  # the same cookie is fine at home
    await beta_socket.disconnect()


async def test_bad_origin_is_refused(clean_tenants, release_channel_layer):
    alpha, _beta = await _tenants()
    cookie = await sync_to_async(login_cookie)(alpha, "origin-staff")
    socket = communicator(ALPHA, cookie, origin="http://evil.example.com")
    connected, _ = await socket.connect(timeout=10)
    assert not connected


async def test_staff_without_view_permission_and_the_public_host_are_refused(
    clean_tenants, release_channel_layer
):
    alpha, _beta = await _tenants()
    bare = await sync_to_async(login_cookie)(alpha, "bare-staff", role="bare")
    assert await close_code(communicator(ALPHA, bare)) == 4403
    assert await close_code(communicator("localhost")) == 4403


async def test_subscriptions_answer_with_a_snapshot_and_ids_are_checked_in_the_tenant(
    clean_tenants, release_channel_layer
):
    alpha, beta = await _tenants()
    cookie = await sync_to_async(login_cookie)(alpha, "viewer", role="viewer")
    batch_id = await sync_to_async(create_batch)(alpha, 2)
    alpha_jobs = await sync_to_async(_job_ids)(alpha, batch_id)
    # Beta's batch and jobs: ids that exist in beta's schema and not in alpha's.
    beta_batch = await sync_to_async(create_batch)(beta, 2)
    while beta_batch == batch_id:
        beta_batch = await sync_to_async(create_batch)(beta, 2)
    beta_jobs = [j for j in await sync_to_async(_job_ids)(beta, beta_batch) if j not in alpha_jobs]
    assert beta_jobs
    socket = await open_live(ALPHA, cookie)

    snapshot = await subscribe(socket, subscribe="batch", id=batch_id)
    assert snapshot["of"] == "batch" and snapshot["batch_id"] == batch_id
    assert snapshot["tenant"] == "test_alpha" and snapshot["timestamp"]
    assert snapshot["status"] == "pending" and snapshot["progress"]["total"] == 2

    overview = await subscribe(socket, subscribe="overview")
    assert [b["batch_id"] for b in overview["batches"]] == [batch_id]

    # Beta's batch and jobs are not there from alpha's socket, though they exist in beta.
    for request, wanted in (
        ({"subscribe": "batch", "id": beta_batch}, "no such batch"),
        ({"subscribe": "job", "id": beta_jobs[0]}, "no such job"),
        ({"subscribe": "jobs", "ids": beta_jobs}, "no such jobs"),
    ):
        error = await subscribe(socket, **request)
        assert error["type"] == "error" and wanted in error["error"], (request, error)
    mixed = await subscribe(socket, subscribe="jobs", ids=[*alpha_jobs, *beta_jobs])
    assert [j["job_id"] for j in mixed["jobs"]] == alpha_jobs
    for bad in ({"subscribe": "batch", "id": "1"}, {"subscribe": "batch", "id": True},
                {"subscribe": "jobs", "ids": list(range(1, 300))}, {"subscribe": "nope"}):  # fmt: skip
        reply = await subscribe(socket, **bad)
        assert reply["type"] == "error", (bad, reply)
    await socket.disconnect()


def _delete_batch(tenant, batch_id: int) -> None:
    with tenant_context(tenant):
        Batch.objects.filter(pk=batch_id).delete()  # never started: its jobs go with it


async def test_snapshots_of_interleaved_consumers_of_both_tenants_stay_in_their_tenant(
    clean_tenants, release_channel_layer
):
    """Consumers share one database thread (PITFALLS): many of both tenants subscribing at
    once must each read their own schema."""
    alpha, beta = await _tenants()
    alpha_ids = {await sync_to_async(create_batch)(alpha, 1) for _ in range(2)}
    # Three beta batches whose ids alpha does not have (ids count per schema: on a fresh
    # database both start at 1). Growing a set that still held the shared ids never ended.
    # The others are deleted, so each tenant's overview lists exactly its set.
    beta_ids: set[int] = set()
    while len(beta_ids) < 3:
        pk = await sync_to_async(create_batch)(beta, 1)
        if pk in alpha_ids:
            await sync_to_async(_delete_batch)(beta, pk)
        else:
            beta_ids.add(pk)
    batches = {"test_alpha": alpha_ids, "test_beta": beta_ids}
    sockets = []
    for n in range(3):
        for tenant, host in ((alpha, ALPHA), (beta, BETA)):
            cookie = await sync_to_async(login_cookie)(tenant, f"mix-{tenant.schema_name}-{n}")
            sockets.append((tenant.schema_name, await open_live(host, cookie)))

    async def watch(schema, socket):
        seen = []
        for _ in range(4):
            overview = await subscribe(socket, subscribe="overview")
            seen.append((overview["tenant"], {b["batch_id"] for b in overview["batches"]}))
            for batch_id in batches["test_alpha"] | batches["test_beta"]:
                reply = await subscribe(socket, subscribe="batch", id=batch_id)
                seen.append(
                    (reply.get("tenant"), batch_id) if reply["type"] == "snapshot" else None
                )
        return schema, seen

    for schema, seen in await asyncio.gather(*(watch(schema, s) for schema, s in sockets)):
        overviews = [entry for entry in seen if entry and isinstance(entry[1], set)]
        assert overviews == [(schema, batches[schema])] * 4, (schema, overviews)
        found = {entry[1] for entry in seen if entry and not isinstance(entry[1], set)}
        assert found == batches[schema], (schema, found)
    for _schema, socket in sockets:
        await socket.disconnect()


async def test_a_job_subscription_follows_its_steps(layer_kind, clean_tenants):
    alpha, _beta = await _tenants()
    cookie = await sync_to_async(login_cookie)(alpha, "job-staff")
    batch_id = await sync_to_async(create_batch)(alpha, 1)
    from orchestration.models import MarketplaceJob

    def first_job():
        from django_tenants.utils import tenant_context

        with tenant_context(alpha):
            return MarketplaceJob.objects.get(batch_id=batch_id).pk

    job_id = await sync_to_async(first_job)()
    socket = await open_live(ALPHA, cookie)
    snapshot = await subscribe(socket, subscribe="job", id=job_id)
    assert [t["step"] for t in snapshot["tasks"]] == ["step1", "step2", "step3"]
    await sync_to_async(start_batch)(alpha, batch_id)
    messages = await receive_until(
        socket, lambda m: m["type"] == "job_status" and m["status"] == "completed"
    )
    steps_done = [m["data"]["step"] for m in messages
                  if m["type"] == "task_progress" and m["status"] == "completed"]  # fmt: skip
    seen = [(m["type"], m.get("status"), m.get("data", {}).get("step")) for m in messages]
    assert steps_done == ["step1", "step2", "step3"], seen
    assert {m["job_id"] for m in messages} == {job_id}
    await socket.disconnect()


async def test_rows_watched_for_their_status_get_no_step_messages(layer_kind, clean_tenants):
    """``statuses_only`` (what list rows ask): job_status only; a job also watched in full on
    the same socket keeps its steps and runs."""
    alpha, _beta = await _tenants()
    cookie = await sync_to_async(login_cookie)(alpha, "rows-staff")
    batch_id = await sync_to_async(create_batch)(alpha, 2)
    first, second = await sync_to_async(_job_ids)(alpha, batch_id)
    socket = await open_live(ALPHA, cookie)
    rows = await subscribe(socket, subscribe="jobs", ids=[first, second], statuses_only=True)
    assert {j["job_id"] for j in rows["jobs"]} == {first, second}
    assert (await subscribe(socket, subscribe="job", id=second))["of"] == "job"
    bad = await subscribe(socket, subscribe="jobs", ids=[first], statuses_only="yes")
    assert bad["type"] == "error" and "statuses_only" in bad["error"]
    bad = await subscribe(socket, subscribe="batch", id=batch_id, statuses_only=True)
    assert bad["type"] == "error" and "statuses_only" in bad["error"]
    await sync_to_async(start_batch)(alpha, batch_id)
    done: set[int] = set()

    def both_completed(m):
        if m["type"] == "job_status" and m["status"] == "completed":
            done.add(m["job_id"])
        return done == {first, second}

    messages = await receive_until(socket, both_completed)
    kinds = {(m["job_id"], m["type"]) for m in messages if m.get("job_id")}
    assert {kind for job, kind in kinds if job == first} == {"job_status"}, kinds
    assert {kind for job, kind in kinds if job == second} >= {
        "job_status",
        "task_progress",
        "run_started",
        "run_completed",
    }, kinds
    await socket.disconnect()


async def test_subscribing_to_a_batch_and_running_it_delivers_progress_ending_in_complete(
    layer_kind, clean_tenants
):
    alpha, _beta = await _tenants()
    cookie = await sync_to_async(login_cookie)(alpha, "flow-staff")
    batch_id = await sync_to_async(create_batch)(alpha, 3)
    socket = await open_live(ALPHA, cookie)
    assert (await subscribe(socket, subscribe="batch", id=batch_id))["of"] == "batch"

    await sync_to_async(start_batch)(alpha, batch_id)
    messages = await receive_until(socket, _is_complete(batch_id))
    for message in messages:
        assert message["tenant"] == "test_alpha"
        assert message["batch_id"] == batch_id
        assert message["timestamp"] and message["status"] and message["progress"]
    progress = [m["progress"]["percent"] for m in messages if m["type"] == "batch_progress"]
    assert progress == sorted(progress) and progress[-1] == 100
    assert messages[-1]["status"] == "completed"
    batch_group = live.group_name("test_alpha", "batch", batch_id)
    assert await until_control(socket, "test_alpha", batch_group) == []  # nothing after it
    await socket.disconnect()


def _align_batch_ids() -> None:
    """The next batch of each test tenant gets the same id (ids keep counting across tests,
    so the two tenants' sequences drift apart: creating batches until they met took ~40 s)."""
    from django.db import connection

    tables = ['"test_alpha".orchestration_batch', '"test_beta".orchestration_batch']
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT max(nextval(pg_get_serial_sequence(t, 'id'))) FROM unnest(%s::text[]) AS t",
            [tables],
        )
        top = cursor.fetchone()[0]
        for table in tables:
            cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, top])


async def test_tenants_never_see_each_others_events(layer_kind, clean_tenants):
    alpha, beta = await _tenants()
    alpha_cookie = await sync_to_async(login_cookie)(alpha, "alpha-staff")
    beta_cookie = await sync_to_async(login_cookie)(beta, "beta-staff")
    # Both tenants have a batch with the same number: only the schema tells them apart.
    await sync_to_async(_align_batch_ids)()
    alpha_batch = await sync_to_async(create_batch)(alpha, 2)
    beta_batch = await sync_to_async(create_batch)(beta, 2)
    assert alpha_batch == beta_batch
    alpha_socket = await open_live(ALPHA, alpha_cookie)
    beta_socket = await open_live(BETA, beta_cookie)
    for socket, batch_id in ((alpha_socket, alpha_batch), (beta_socket, beta_batch)):
        await subscribe(socket, subscribe="overview")
        await subscribe(socket, subscribe="batch", id=batch_id)

    await sync_to_async(start_batch)(alpha, alpha_batch)
    alpha_messages = await receive_until(alpha_socket, _is_complete(alpha_batch))
    assert {m["tenant"] for m in alpha_messages} == {"test_alpha"}
    assert await until_control(beta_socket, "test_beta", _overview("test_beta")) == []

    await sync_to_async(start_batch)(beta, beta_batch)
    beta_messages = await receive_until(beta_socket, _is_complete(beta_batch))
    assert {m["tenant"] for m in beta_messages} == {"test_beta"}
    assert await until_control(alpha_socket, "test_alpha", _overview("test_alpha")) == []
    for socket in (alpha_socket, beta_socket):
        await socket.disconnect()


async def test_concurrent_connections_each_receive_only_their_own_events(layer_kind, clean_tenants):
    alpha, beta = await _tenants()
    people = [
        (alpha, ALPHA, "alpha-one", "admin"),
        (alpha, ALPHA, "alpha-two", "viewer"),
        (beta, BETA, "beta-one", "admin"),
        (beta, BETA, "beta-two", "viewer"),
    ]
    sockets = []
    for tenant, host, username, role in people:
        cookie = await sync_to_async(login_cookie)(tenant, username, role=role)
        sockets.append((tenant, await open_live(host, cookie)))
    batches = {
        "test_alpha": await sync_to_async(create_batch)(alpha, 3),
        "test_beta": await sync_to_async(create_batch)(beta, 2),
    }
    for _tenant, socket in sockets:
        await subscribe(socket, subscribe="overview")

    await asyncio.gather(
        sync_to_async(closing_connection(start_batch), thread_sensitive=False)(
            alpha, batches["test_alpha"]
        ),
        sync_to_async(closing_connection(start_batch), thread_sensitive=False)(
            beta, batches["test_beta"]
        ),
    )
    for tenant, socket in sockets:
        schema = tenant.schema_name
        messages = await receive_until(socket, _is_complete(batches[schema]))
        assert {m["tenant"] for m in messages} == {schema}
        assert {m["batch_id"] for m in messages} == {batches[schema]}
        later = await until_control(socket, schema, _overview(schema))
        assert not [m for m in later if m["tenant"] != schema], later
        await socket.disconnect()


async def test_a_page_that_reconnects_resynchronises_from_the_snapshot(layer_kind, clean_tenants):
    alpha, _beta = await _tenants()
    cookie = await sync_to_async(login_cookie)(alpha, "reconnect-staff")
    batch_id = await sync_to_async(create_batch)(alpha, 2)
    socket = await open_live(ALPHA, cookie)
    before = await subscribe(socket, subscribe="batch", id=batch_id)
    assert before["status"] == "pending"
    await socket.disconnect()  # the page loses its socket …
    await sync_to_async(start_batch)(alpha, batch_id)  # … while the batch runs to the end
    socket = await open_live(ALPHA, cookie)
    after = await subscribe(socket, subscribe="batch", id=batch_id)
    assert (after["status"], after["progress"]["percent"]) == ("completed", 100)
    await subscribe(socket, subscribe="overview")
    # A job of the finished batch stays watched: the control message goes through its group.
    kept = (await sync_to_async(_job_ids)(alpha, batch_id))[0]
    assert (await subscribe(socket, subscribe="job", id=kept))["type"] == "snapshot"
    await socket.send_json_to({"unsubscribe": "batch", "id": batch_id})
    await socket.send_json_to({"unsubscribe": "overview"})
    await socket.send_json_to({"ping": 1})
    assert (await socket.receive_json_from(timeout=10))["type"] == "pong"
    await sync_to_async(start_batch)(alpha, await sync_to_async(create_batch)(alpha, 1))
    kept_group = live.group_name("test_alpha", "job", kept)
    assert await until_control(socket, "test_alpha", kept_group) == []  # nothing once unsubscribed
    await socket.disconnect()


async def test_a_logout_closes_the_socket_at_the_next_subscription(
    clean_tenants, release_channel_layer
):
    alpha, _beta = await _tenants()
    cookie = await sync_to_async(login_cookie)(alpha, "leaving-staff")
    socket = await open_live(ALPHA, cookie)
    assert (await subscribe(socket, subscribe="overview"))["type"] == "snapshot"
    await sync_to_async(end_session)(alpha, cookie)
    await socket.send_json_to({"subscribe": "overview"})
    assert await socket.receive_output(timeout=10) == {"type": "websocket.close", "code": 4403}


async def test_a_deactivated_user_stops_receiving_live_messages(
    clean_tenants, release_channel_layer, monkeypatch
):
    monkeypatch.setattr(consumers, "RECHECK_SECONDS", 0.0)  # check at every message
    alpha, _beta = await _tenants()
    cookie = await sync_to_async(login_cookie)(alpha, "soon-inactive")
    batch_id = await sync_to_async(create_batch)(alpha, 2)
    socket = await open_live(ALPHA, cookie)
    assert (await subscribe(socket, subscribe="batch", id=batch_id))["type"] == "snapshot"
    await sync_to_async(deactivate)(alpha, "soon-inactive")
    await sync_to_async(start_batch)(alpha, batch_id)
    # The batch's messages flow; instead of forwarding the first, the socket closes.
    assert await socket.receive_output(timeout=15) == {"type": "websocket.close", "code": 4403}


async def test_live_messages_reach_the_socket_without_a_thread_hop(
    clean_tenants, release_channel_layer, monkeypatch
):
    import channels.consumer

    hops: list[str] = []
    real = channels.consumer.aclose_old_connections

    async def counted():
        hops.append("close_old_connections")
        return await real()

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    alpha, _beta = await _tenants()
    cookie = await sync_to_async(login_cookie)(alpha, "hops-staff")
    batch_id = await sync_to_async(create_batch)(alpha, 2)
    socket = await open_live(ALPHA, cookie)
    assert (await subscribe(socket, subscribe="batch", id=batch_id))["type"] == "snapshot"
    before = len(hops)
    assert before >= 1  # the subscription (a client's message) went through it
    await sync_to_async(start_batch)(alpha, batch_id)
    messages = await receive_until(socket, _is_complete(batch_id))
    assert any(m["type"] == "batch_progress" for m in messages)
    assert len(hops) == before, "live messages went through a thread each"
    await socket.send_json_to({"ping": 1})
    assert (await socket.receive_json_from(timeout=10))["type"] == "pong"
    assert len(hops) == before + 1
    await socket.disconnect()
