"""The Redis layer's ``group_send_many`` (config/redis_layer.py) against a real Redis: what
``group_send`` one by one would deliver, in the same order, within each channel's capacity."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from config.redis_layer import _POP_LUA, RECEIVE_BATCH, RedisChannelLayer
from tests.integration.live.layers import REDIS_LAYER_URL

pytestmark = pytest.mark.asyncio


def _layer(**config) -> RedisChannelLayer:
    prefix = f"asgi-many-{uuid.uuid4().hex[:10]}"
    return RedisChannelLayer(hosts=[{"address": REDIS_LAYER_URL}], prefix=prefix, **config)


async def _drain(layer, channel, count: int) -> list[int]:
    got = []
    for _ in range(count):
        message = await asyncio.wait_for(layer.receive(channel), timeout=5)
        got.append(message["n"])
    return got


async def test_a_chunk_reaches_each_member_in_order_and_skips_empty_groups():
    layer = _layer()
    try:
        a, b = await layer.new_channel(), await layer.new_channel()
        await layer.group_add("t.x.job.1", a)
        await layer.group_add("t.x.job.1", b)
        await layer.group_add("t.x.job.2", a)
        pairs = [("t.x.job.1", {"type": "live.message", "n": 0})]
        pairs.append(("t.x.job.2", {"type": "live.message", "n": 1}))
        pairs.append(("t.x.job.9", {"type": "live.message", "n": -1}))  # nobody listens
        pairs += [(f"t.x.job.{1 + n % 2}", {"type": "live.message", "n": n}) for n in range(2, 80)]
        await layer.group_send_many(pairs)
        to_a = [n for group, m in pairs if group != "t.x.job.9" for n in [m["n"]]]
        to_b = [m["n"] for group, m in pairs if group == "t.x.job.1"]
        assert await _drain(layer, a, len(to_a)) == to_a
        assert await _drain(layer, b, len(to_b)) == to_b
        with pytest.raises(TimeoutError):  # nothing more (the empty group's message went nowhere)
            await asyncio.wait_for(layer.receive(b), timeout=0.3)
    finally:
        await layer.flush()
        await layer.close_pools()


async def test_a_chunk_keeps_each_channels_capacity():
    layer = _layer(capacity=3)
    try:
        channel = await layer.new_channel()
        await layer.group_add("t.x.overview", channel)
        await layer.group_send_many(
            [("t.x.overview", {"type": "live.message", "n": n}) for n in range(5)]
        )
        assert await _drain(layer, channel, 3) == [0, 1, 2]  # like group_send: the rest dropped
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(channel), timeout=0.3)
    finally:
        await layer.flush()
        await layer.close_pools()


async def test_this_process_channel_is_read_in_batches_in_order():
    """Up to RECEIVE_BATCH messages leave Redis in one round trip (four per message in
    channels-redis), and come out in the order they were sent."""
    layer = _layer(capacity=300)
    try:
        channel = await layer.new_channel()
        for n in range(250):
            await layer.send(channel, {"type": "live.message", "n": n})
        assert await _drain(layer, channel, 1) == [0]
        key = layer.prefix + layer.non_local_name(channel)
        left = await layer.connection(layer.consistent_hash(channel)).zcard(key)
        assert RECEIVE_BATCH >= 50 and left == 250 - RECEIVE_BATCH
        assert await _drain(layer, channel, 249) == list(range(1, 250))
    finally:
        await layer.flush()
        await layer.close_pools()


async def test_a_receive_cancelled_mid_pop_loses_no_message():
    """A consumer that goes away (its task cancelled) while the layer pops from Redis must
    not take the popped messages with it: the next receive hands them out, in order. The
    cancel lands at every point of the pop in turn (after 0, 1, 2 … loop iterations)."""
    layer = _layer(capacity=1000)
    try:
        channel = await layer.new_channel()
        sent = 0
        for ticks in range(40):
            for _ in range(5):
                await layer.send(channel, {"type": "live.message", "n": sent})
                sent += 1
            waiter = asyncio.ensure_future(layer.receive(channel))
            for _ in range(ticks):
                await asyncio.sleep(0)
            waiter.cancel()
            got = []
            with contextlib.suppress(asyncio.CancelledError):
                got.append((await waiter)["n"])
            expected = list(range(sent - 5, sent))
            got += await _drain(layer, channel, 5 - len(got))
            assert got == expected, ticks
    finally:
        await layer.flush()
        await layer.close_pools()


async def test_a_batch_whose_reply_was_lost_is_delivered_once_by_the_next_pop():
    """A pop that ran in Redis but whose reply never arrived (the connection dropped) leaves
    its batch in the backup; the next pop puts it back first, in order, and a batch that did
    arrive is never delivered twice."""
    layer = _layer()
    try:
        channel = await layer.new_channel()
        for n in range(5):
            await layer.send(channel, {"type": "live.message", "n": n})
        key = layer.prefix + layer.non_local_name(channel)
        backup = layer._backup_channel_name(key)
        connection = layer.connection(layer.consistent_hash(channel))
        lost = await connection.eval(_POP_LUA, 3, key, backup, f"{backup}:pop", 100, "", 60, "x")
        assert len(lost) == 5  # popped in Redis; this process never saw the reply
        assert await _drain(layer, channel, 5) == [0, 1, 2, 3, 4]
        for n in range(5, 8):
            await layer.send(channel, {"type": "live.message", "n": n})
        assert await _drain(layer, channel, 3) == [5, 6, 7]
        with pytest.raises(TimeoutError):  # nothing twice
            await asyncio.wait_for(layer.receive(channel), timeout=0.3)
    finally:
        await layer.flush()
        await layer.close_pools()
