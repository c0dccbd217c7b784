"""Job-level messages go only to job groups somebody watches (issue 17), for real: both
channel layers, the process's real publisher, and a real consumer's catch-up snapshot."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django_tenants.utils import schema_context, tenant_context

from config.channel_layer import group_discard
from orchestration import events, live
from orchestration.models import MarketplaceJob
from orchestration.services import job_cancel
from tests.conftest import _ensure_tenant
from tests.integration.live.layers import listening_channel
from tests.integration.live.scenarios import create_batch, login_cookie
from tests.integration.live.sockets import open_live, subscribe

SCHEMA = "test_alpha"
pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def _step(job_id: int, status: str = "running") -> None:
    """A step's progress of ``job_id``, committed (autocommit: delivered at once)."""
    with schema_context(SCHEMA):
        events.emit("task_progress", status=status, job_id=job_id, task_id=job_id * 10,
                    data={"step": "one", "order": 1})  # fmt: skip


async def _receive(layer, channel, timeout: float = 10) -> dict:
    return (await asyncio.wait_for(layer.receive(channel), timeout=timeout))["message"]


async def test_a_job_nobody_watches_costs_no_send_and_a_new_watcher_is_found(
    layer_kind, clean_tenants
):
    await sync_to_async(_ensure_tenant)("alpha")
    layer, channel = await listening_channel()
    watched, unwatched = 90_001, 90_002
    await layer.group_add(live.group_name(SCHEMA, "job", watched), channel)
    publisher = live.get_publisher()
    await sync_to_async(_step)(watched)
    await sync_to_async(live.flush)()  # sent, and the watched groups read
    assert (await _receive(layer, channel))["job_id"] == watched

    sent = publisher.stats.sent
    await sync_to_async(_step)(unwatched)
    await sync_to_async(_step)(watched, "completed")
    await sync_to_async(live.flush)()
    assert (await _receive(layer, channel))["status"] == "completed"
    assert publisher.stats.sent - sent == 1  # the unwatched job's message was never sent

    # A watcher that joins later is found by the publisher's next reading on its own.
    await layer.group_add(live.group_name(SCHEMA, "job", unwatched), channel)
    arriving = asyncio.ensure_future(layer.receive(channel))
    for _ in range(100):
        await sync_to_async(_step)(unwatched)
        done, _pending = await asyncio.wait({arriving}, timeout=0.1)
        if done:
            break
    assert arriving.done(), "the publisher never found the new watcher"
    assert arriving.result()["message"]["job_id"] == unwatched
    for pk in (watched, unwatched):
        await group_discard(layer, live.group_name(SCHEMA, "job", pk), channel)


async def test_overview_and_batch_messages_do_not_depend_on_job_watchers(layer_kind, clean_tenants):
    await sync_to_async(_ensure_tenant)("alpha")
    layer, channel = await listening_channel()
    overview = live.group_name(SCHEMA, "overview")
    await layer.group_add(overview, channel)
    await sync_to_async(_step)(90_003)
    await sync_to_async(live.flush)()

    def fail() -> None:
        with schema_context(SCHEMA):
            events.emit("job_status", status="failed", job_id=90_003, data={"from": "running"})

    await sync_to_async(fail)()
    await sync_to_async(live.flush)()
    message = await _receive(layer, channel)
    assert (message["type"], message["job_id"], message["status"]) == (
        "job_status", 90_003, "failed",
    )  # fmt: skip
    await group_discard(layer, overview, channel)


class _LayerThatCannotTell:
    """A layer without ``groups_with_members`` (or whose reading fails): records sends."""

    def __init__(self, fail: bool = False):
        self.sent: list[str] = []
        self.fail = fail

    async def group_send(self, group, message):
        self.sent.append(group)

    async def groups_with_members(self, pattern):
        if not self.fail:
            return set()
        raise ConnectionError("layer down")


@pytest.mark.parametrize("fail", [False, True], ids=["knows-nobody", "reading-fails"])
async def test_only_a_successful_reading_holds_messages_back(fail):
    layer = _LayerThatCannotTell(fail=fail)
    publisher = live.Publisher(layer_factory=lambda: layer)
    try:
        item = live.outgoing_for(
            events.Event("task_progress", "acme", "running", job_id=5, task_id=6)
        )[0]
        assert publisher.watches(item.group)  # nothing read yet: every group counts
        publisher.publish([item])
        assert await sync_to_async(publisher.flush)()
        assert publisher.watches(item.group) is fail  # nobody watches, unless unknown
    finally:
        publisher.stop()


async def test_a_page_watching_a_job_gets_a_catch_up_snapshot(layer_kind, clean_tenants):
    """What no live message told the page (publishers had not yet seen it join) comes in the
    second snapshot, sent ``CATCH_UP_SECONDS`` after the subscription."""
    alpha = await sync_to_async(_ensure_tenant)("alpha")
    cookie = await sync_to_async(login_cookie)(alpha, "catch-up-staff")
    batch_id = await sync_to_async(create_batch)(alpha, 1)

    def job_id() -> int:
        with tenant_context(alpha):
            return MarketplaceJob.objects.get(batch_id=batch_id).pk

    def cancel_unannounced(pk: int) -> None:
        events.unsubscribe_batches(live.publish_events)  # as if its message were left out
        try:
            with tenant_context(alpha):
                job_cancel(job_id=pk)
        finally:
            events.subscribe_batches(live.publish_events)

    pk = await sync_to_async(job_id)()
    socket = await open_live("alpha.localhost", cookie)
    first = await subscribe(socket, subscribe="job", id=pk)
    assert first["status"] != "cancelled"
    await sync_to_async(cancel_unannounced)(pk)
    second = await socket.receive_json_from(timeout=live.CATCH_UP_SECONDS + 10)
    assert (second["type"], second["of"], second["job_id"], second["status"]) == (
        "snapshot", "job", pk, "cancelled",
    )  # fmt: skip
    await socket.disconnect()


class _CountingLayer(_LayerThatCannotTell):
    def __init__(self):
        super().__init__()
        self.readings = 0

    async def groups_with_members(self, pattern):
        self.readings += 1
        return set()


async def test_the_watched_groups_are_read_again_while_messages_flow():
    """Without a new reading the last one would age past ``watch_max_age`` and every job's
    messages would go out again."""
    layer = _CountingLayer()
    publisher = live.Publisher(layer_factory=lambda: layer, watch_refresh=0.05)
    event = events.Event("task_progress", "acme", "running", job_id=5, task_id=6)
    try:
        for _ in range(1000):  # until 3 readings: 0.1 s on an idle machine; 10 s at most
            items = live.outgoing_for(event, publisher.watches)  # what a worker's commit does
            if items:
                publisher.publish(items)
            await asyncio.sleep(0.01)
            if layer.readings >= 3:
                break
        assert layer.readings >= 3
        assert live.outgoing_for(event, publisher.watches) == []
    finally:
        await sync_to_async(publisher.stop)()
