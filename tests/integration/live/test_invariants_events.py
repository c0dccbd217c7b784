"""Events after commit, for real (invariant 8; issue 10): a change made in a transaction
reaches a channel-layer receiver only once it is committed, and a rolled-back change
emits nothing. Real transactions on another connection, the process's real publisher,
both channel layers; "nothing arrived" is checked against a marker sent afterwards.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django_tenants.utils import schema_context

from config.channel_layer import group_discard
from orchestration import events, live
from orchestration.models import MarketplaceJob
from orchestration.services import job_cancel, job_create
from tests.conftest import _ensure_tenant
from tests.engine_providers import MARKETPLACE
from tests.integration.live.layers import listening_channel

SCHEMA = "test_alpha"


class _RolledBack(Exception):
    pass


def _create_job() -> int:
    _ensure_tenant("alpha")
    with schema_context(SCHEMA):
        return job_create(marketplace=MARKETPLACE, action="three").pk


def _status(job_id: int) -> str:
    with schema_context(SCHEMA):
        return MarketplaceJob.objects.values_list("status", flat=True).get(pk=job_id)


async def _next(layer, channel) -> dict:
    return await asyncio.wait_for(layer.receive(channel), timeout=10)


async def _until_marker(layer, channel, name: str) -> list[dict]:
    """Everything that arrives before the marker ``name`` (sent now, after a flush)."""
    await sync_to_async(live.flush)()
    await layer.send(channel, {"type": "test.marker", "name": name})
    before = []
    while (message := await _next(layer, channel)).get("name") != name:
        before.append(message)
    return before


class _OpenTransaction:
    """Cancels the job in a transaction on another thread (and connection), and holds it
    open until told to commit or roll back."""

    def __init__(self, job_id: int, *, rollback: bool):
        self.job_id, self.rollback = job_id, rollback
        self.inside, self.finish, self.done = (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with schema_context(SCHEMA):
                try:
                    with transaction.atomic():
                        job_cancel(job_id=self.job_id)
                        live.flush()  # anything the publisher was handed is sent by now
                        self.inside.set()
                        self.finish.wait(30)
                        if self.rollback:
                            raise _RolledBack
                except _RolledBack:
                    pass
                live.flush()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            connection.close()
            self.inside.set()
            self.done.set()

    async def wait_inside(self) -> None:
        await asyncio.to_thread(self.inside.wait, 30)
        assert self.error is None, self.error

    async def end(self) -> None:
        self.finish.set()
        await asyncio.to_thread(self.done.wait, 30)
        assert self.error is None, self.error


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_live_message_arrives_only_after_its_commit(layer_kind, clean_tenants):
    job_id = await sync_to_async(_create_job)()
    layer, channel = await listening_channel()
    group = live.group_name(SCHEMA, "job", job_id)
    await layer.group_add(group, channel)
    await _until_marker(layer, channel, "settled")  # the job's creation messages, if any

    change = _OpenTransaction(job_id, rollback=False)
    await change.wait_inside()
    # Uncommitted: nothing about it before a marker sent after it was made.
    assert await _until_marker(layer, channel, "before commit") == []
    assert await sync_to_async(_status)(job_id) == "queued"  # what other sessions see

    await change.end()
    envelope = await _next(layer, channel)
    message = envelope["message"]
    assert (message["type"], message["job_id"], message["status"]) == (
        "job_status",
        job_id,
        "cancelled",
    )
    # The state it describes is visible to any session once it arrives.
    assert await sync_to_async(_status)(job_id) == "cancelled"
    await group_discard(layer, group, channel)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_rolled_back_change_emits_nothing(layer_kind, clean_tenants):
    job_id = await sync_to_async(_create_job)()
    layer, channel = await listening_channel()
    group = live.group_name(SCHEMA, "job", job_id)
    await layer.group_add(group, channel)
    await _until_marker(layer, channel, "settled")
    recorder = events.EventRecorder()
    events.subscribe(recorder)
    try:
        change = _OpenTransaction(job_id, rollback=True)
        await change.wait_inside()
        await change.end()
        assert await _until_marker(layer, channel, "after rollback") == []
        assert recorder.events == []
    finally:
        events.unsubscribe(recorder)
    assert await sync_to_async(_status)(job_id) == "queued"
    await group_discard(layer, group, channel)
