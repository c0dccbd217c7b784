"""The Redis layer's ``group_send_many`` (config/redis_layer.py) against a real Redis: what
``group_send`` one by one would deliver, in the same order, within each channel's capacity."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from config.redis_layer import RedisChannelLayer
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
