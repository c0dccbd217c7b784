"""channels-redis with ``group_send_many``: a chunk of group sends in two round trips.

``RedisChannelLayer.group_send`` costs four round trips per message (expire the group,
read its members, expire each member's queue, push). The live publisher sends job-level
messages in chunks of up to 200 (``orchestration.live.publisher``); with Redis it sent them
in waves of 8 ``group_send`` calls, and under load the Redis layer's event → layer p95 was
~20 times PostgreSQL's (docs/benchmarks.md). Here a chunk reads every group's members in one
pipeline and pushes every message in a second one, with the same Lua script, capacity
check and expiry as ``group_send``; messages for one channel keep their order (each gets
a strictly later score than the one before it).

Only with one Redis host: with several (sharded) hosts, the messages go one by one through
``group_send``, in order.
"""

from __future__ import annotations

import time
from typing import Any

from channels_redis.core import RedisChannelLayer as _RedisChannelLayer

# channels-redis 4's group_send script: push to each channel below its capacity.
_GROUP_SEND_LUA = """
    local over_capacity = 0
    local current_time = ARGV[#ARGV - 1]
    local expiry = ARGV[#ARGV]
    for i=1,#KEYS do
        if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
            redis.call('ZADD', KEYS[i], current_time, ARGV[i])
            redis.call('EXPIRE', KEYS[i], expiry)
        else
            over_capacity = over_capacity + 1
        end
    end
    return over_capacity
"""


def _glob_literal(text: str) -> str:
    """``text`` matched literally by a Redis ``MATCH`` pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisChannelLayer(_RedisChannelLayer):
    async def groups_with_members(self, pattern: str) -> set[str]:
        """The groups named like ``pattern`` (``*``: any text) that have a member (the live
        publisher skips job-level messages to the others). Redis drops a group's key with its
        last member."""
        prefix = self._group_key("").decode("utf8")
        match = _glob_literal(prefix) + _glob_literal(pattern).replace("\\*", "*")
        found: set[str] = set()
        for index in range(self.ring_size):
            async for key in self.connection(index).scan_iter(match=match, count=1000):
                found.add(key.decode("utf8")[len(prefix) :])
        return found

    async def group_send_many(self, pairs: list[tuple[str, dict[str, Any]]]) -> None:
        """``group_send`` of each (group, message), in order, in two round trips."""
        if not pairs:
            return
        if self.ring_size != 1:
            for group, message in pairs:
                await self.group_send(group, message)
            return
        for group, _message in pairs:
            assert self.require_valid_group_name(group), "Group name not valid"
        connection = self.connection(0)
        now = int(time.time())
        groups = list(dict.fromkeys(group for group, _message in pairs))
        pipe = connection.pipeline(transaction=False)
        for group in groups:
            key = self._group_key(group)
            pipe.zremrangebyscore(key, min=0, max=now - self.group_expiry)
            pipe.zrange(key, 0, -1)
        replies = await pipe.execute()
        members = {
            group: [name.decode("utf8") for name in replies[2 * i + 1]]
            for i, group in enumerate(groups)
        }
        pipe = connection.pipeline(transaction=False)
        expired: set[bytes | str] = set()
        score = 0.0
        queued = 0
        for group, message in pairs:
            names = members[group]
            if not names:
                continue
            by_connection, message_of, capacity_of = self._map_channel_keys_to_connection(
                names, message
            )
            keys = by_connection[0]
            for key in keys:
                if key not in expired:  # old messages of each channel dropped once
                    expired.add(key)
                    pipe.zremrangebyscore(key, min=0, max=now - int(self.expiry))
            # A later score than the previous message's: a channel receives in this order.
            score = max(time.time(), score + 1e-6)
            pipe.eval(
                _GROUP_SEND_LUA, len(keys), *keys, *[message_of[k] for k in keys],
                *[capacity_of[k] for k in keys], score, self.expiry,
            )  # fmt: skip
            queued += 1
        if queued:
            await pipe.execute()
