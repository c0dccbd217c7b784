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

On the receiving side, ``receive_single`` takes up to ``RECEIVE_BATCH`` messages off this
process's own channel (``specific.<client>!``: every consumer of an ASGI process shares it)
in one script (``ZPOPMIN``) and hands them out from memory. channels-redis makes four sequential round
trips per message (restore its backup queue, ``BZPOPMIN``, back the message up, clean the
backup): a burst of 300 messages to three consumers took ~150 ms to receive on an idle
2-CPU machine and ~300 ms under CPU contention, and the Redis layer's commit → layer p95
was 540 ms in the first second of a watched batch (docs/benchmarks.md). The pop runs as a
task the waiting receive shields from cancellation, so a consumer that goes away mid-pop
leaves the popped messages to the next receive instead of losing them. A batch stays in a
backup key until the next pop knows its reply arrived, so a reply lost with the connection
puts it back (channels-redis backs up each message the same way, at two more round trips
each). A message popped but not yet handed out lives in this process's memory, like the
messages channels-redis itself buffers per consumer.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from typing import Any

from channels_redis.core import RedisChannelLayer as _RedisChannelLayer

logger = logging.getLogger(__name__)

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


RECEIVE_BATCH = 100  # messages taken off this process's channel in one round trip

# A pop of up to ARGV[1] messages off KEYS[1], backed up in KEYS[2] (with its pop's id,
# ARGV[4], in KEYS[3]) until the next pop. That one passes the id of the last pop whose reply
# it got (ARGV[2]): the backup is dropped if it is that pop's, else (its reply was lost with
# the connection) it goes back into the channel first, with its scores (its order). A pop
# that never ran leaves the backup as it was. Returns the members, in order.
_POP_LUA = """
    local held = redis.call('GET', KEYS[3])
    if held and held ~= ARGV[2] then
        local backed_up = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
        for i = #backed_up, 1, -2 do
            redis.call('ZADD', KEYS[1], backed_up[i], backed_up[i - 1])
        end
    end
    redis.call('DEL', KEYS[2], KEYS[3])
    local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
    local members = {}
    for i = 1, #popped, 2 do
        redis.call('ZADD', KEYS[2], popped[i + 1], popped[i])
        members[#members + 1] = popped[i]
    end
    if #members > 0 then
        redis.call('EXPIRE', KEYS[2], ARGV[3])
        redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[3])
    end
    return members
"""


def _log_unread_failure(pop: asyncio.Future) -> None:
    """A pop whose receive went away: its failure is logged, not left unread."""
    if not pop.cancelled() and pop.exception() is not None:
        logger.warning("channel layer pop failed: %s", pop.exception())


def _glob_literal(text: str) -> str:
    """``text`` matched literally by a Redis ``MATCH`` pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisChannelLayer(_RedisChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Per process channel key: messages popped and not yet handed out; the pop in flight
        # (at most one); the id of the last pop whose reply arrived (its backup is dropped).
        self._popped: dict[str, collections.deque[bytes]] = {}
        self._popping: dict[str, asyncio.Future] = {}
        self._replied: dict[str, str] = {}
        self._pop_ids = itertools.count(1)

    async def receive_single(self, channel: str) -> tuple[Any, dict[str, Any]]:
        """The next message of ``channel``; this process's own channel is read in batches."""
        if "!" not in channel:
            return await super().receive_single(channel)
        assert channel.endswith("!"), "receive_single takes the process's channel"
        assert self.require_valid_channel_name(channel, receive=True), "Channel name invalid"
        key = self.prefix + channel
        popped = self._popped.setdefault(key, collections.deque())
        while not popped:
            pop = self._popping.get(key)
            if pop is None or pop.done() or pop.get_loop() is not asyncio.get_running_loop():
                index = self.consistent_hash(channel)
                pop = self._popping[key] = asyncio.ensure_future(self._pop(index, key, popped))
                pop.add_done_callback(_log_unread_failure)
            await asyncio.shield(pop)
        message = self.deserialize(popped.popleft())
        if "__asgi_channel__" in message:
            channel = message.pop("__asgi_channel__")
        return channel, message

    async def close_pools(self) -> None:
        """Close the connections. A pop in flight is cancelled (a receive waiting on it ends
        cancelled too), and messages popped but not handed out are dropped with the layer."""
        popping, self._popping = list(self._popping.values()), {}
        self._popped.clear()
        here = asyncio.get_running_loop()
        for pop in popping:
            pop.cancel()
        await asyncio.gather(*(p for p in popping if p.get_loop() is here), return_exceptions=True)
        await super().close_pools()

    async def _pop(self, index: int, key: str, into: collections.deque[bytes]) -> None:
        """Up to ``RECEIVE_BATCH`` waiting messages, else the next one to arrive (or none
        within ``brpop_timeout``), appended to ``into`` in their order. A batch is kept in a
        backup until the next pop tells it arrived (``_POP_LUA``): a reply lost with the
        connection puts the batch back in the channel (channels-redis's backup, per batch)."""
        connection = self.connection(index)
        pop_id = str(next(self._pop_ids))
        backup = self._backup_channel_name(key)
        found = await connection.eval(
            _POP_LUA, 3, key, backup, f"{backup}:pop", RECEIVE_BATCH, self._replied.get(key, ""),
            self.expiry, pop_id,
        )  # fmt: skip
        self._replied[key] = pop_id
        if not found:
            result = await connection.bzpopmin(key, timeout=self.brpop_timeout)
            found = [] if result is None else [result[1]]
        into.extend(found)

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
