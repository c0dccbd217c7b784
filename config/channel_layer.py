"""Helpers around the configured channel layer.

channels-postgres 1.1.4 has three traps this module works around (docs/live.md):

- one module-global psycopg pool bound to the first event loop that used it: a
  process that sends from several loops (``async_to_sync`` from a worker thread
  makes a new loop per call) keeps using a pool whose workers live on a dead loop;
  after the first lost connection every send fails, then blocks 30 s (measured);
- ``group_discard`` goes through the Django ORM alias ``channels_postgres``, which
  this project does not define (ConnectionDoesNotExist);
- a ``group_send`` to a group nobody listens to logs a WARNING every time.

``PostgresChannelLayer`` below owns its pool per instance (so per loop), discards
through that pool and sends quietly; ``make_private_layer`` builds one for a
long-lived loop (the live publisher's thread) whatever the configured backend is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from datetime import timedelta
from typing import Any

from channels import DEFAULT_CHANNEL_LAYER

logger = logging.getLogger(__name__)

try:
    import psycopg
    import psycopg_pool
    from channels_postgres import core as pg_core
    from channels_postgres import db as pg_db
    from psycopg import sql
except ImportError:  # pragma: no cover - layer not installed
    pg_core = None
    pg_db = None


async def close_channel_layers() -> None:
    """Release every channel layer's connections bound to the running event loop.

    channels-postgres keeps one module-global psycopg pool and an untracked LISTEN
    task, both tied to the loop that first used them; a process that ends a loop
    (a test, a short-lived async_to_sync) must close them or the loop's shutdown
    hangs cancelling them.
    """
    from channels.layers import channel_layers

    for task in asyncio.all_tasks():
        coro = task.get_coro()
        if getattr(coro, "__qualname__", "").endswith("listen_to_all_channels"):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if pg_db is not None:
        pool = pg_db.connection_pool
        if pool is not None and _belongs_to_running_loop(pool):
            await asyncio.wait_for(pool.close(), timeout=5)
        # A pool of a loop that has already ended cannot be closed from here; drop it.
        pg_db.connection_pool = None
        pg_db.is_creating_connection_pool = asyncio.Lock()
        pg_core.ASYNCIO_EVENT_CHANNEL_MAPPING.clear()
    for layer in list(channel_layers.backends.values()):
        close_pools = getattr(layer, "close_pools", None)
        if close_pools is not None:
            await close_pools()
    channel_layers.backends.clear()


def _belongs_to_running_loop(pool) -> bool:
    loop = asyncio.get_running_loop()
    workers = getattr(pool, "_workers", [])
    return all(task.get_loop() is loop for task in workers)


async def group_discard(layer, group: str, channel: str) -> None:
    """``layer.group_discard`` that also works with the stock channels-postgres layer.

    (Its own discard needs a DATABASES alias this project does not have.)
    """
    if (
        pg_core is not None
        and isinstance(layer, pg_core.PostgresChannelLayer)
        and not isinstance(layer, PostgresChannelLayer)
    ):
        pool = await layer.django_db.get_db_pool(db_params=layer.db_params)
        await _delete_membership(pool, layer._group_key(group), channel)
        return
    await layer.group_discard(group, channel)


async def _delete_membership(pool, group_key: str, channel: str) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            sql.SQL("DELETE FROM {} WHERE group_key = %s AND channel = %s").format(
                sql.Identifier(pg_db.GROUP_CHANNEL_TABLE)
            ),
            (group_key, channel),
        )


if pg_core is not None:

    class _OwnPoolDatabase(pg_db.DatabaseLayer):
        """channels-postgres' queries over a pool owned by this object (one event loop)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pool: psycopg_pool.AsyncConnectionPool | None = None
            self._pool_lock: asyncio.Lock | None = None
            self.application_name = ""

        async def get_db_pool(self, db_params: dict[str, Any]) -> psycopg_pool.AsyncConnectionPool:
            if self._pool is not None:
                return self._pool
            if self._pool_lock is None:
                self._pool_lock = asyncio.Lock()
            async with self._pool_lock:
                if self._pool is None:
                    options = {
                        "min_size": 1,
                        "max_size": 4,
                        # A connection killed meanwhile (DB restart, idle timeout) is
                        # replaced instead of failing the next send; only connections idle
                        # for a while are checked (a check is a round trip: per send, it
                        # doubled a busy publisher's cost).
                        "check": _check_if_idle,
                        **self.psycopg_options,
                    }
                    params = dict(db_params)
                    if self.application_name:
                        params["application_name"] = self.application_name
                    pool = psycopg_pool.AsyncConnectionPool(
                        conninfo=psycopg.conninfo.make_conninfo(conninfo="", **params),
                        open=False,
                        configure=_autocommit,
                        **options,
                    )
                    try:
                        await pool.open(wait=True, timeout=10)
                    except BaseException:
                        # Opened but never ours (the database is down, or the caller gave
                        # up): its workers keep reconnecting until the loop ends, then die
                        # with "Task was destroyed but it is pending!".
                        with contextlib.suppress(Exception):
                            await pool.close(timeout=1)
                        raise
                    self._pool = pool
            return self._pool

        async def delete_channel_group(self, group_key: str, channel: str) -> None:
            await _delete_membership(await self.get_db_pool(self.db_params), group_key, channel)

        async def close(self) -> None:
            pool, self._pool = self._pool, None
            if pool is not None:
                await asyncio.wait_for(pool.close(), timeout=5)

    def _log_check_failure(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.info(
                "channel layer: checking the pool's connections failed (%s)", task.exception()
            )

    async def _autocommit(conn) -> None:
        await conn.set_autocommit(True)

    IDLE_CHECK_SECONDS = 2.0

    async def _check_if_idle(conn) -> None:
        # Called at each checkout; the time since the previous checkout bounds the idle
        # time from above (a ``reset`` callback could stamp returns, but it makes the pool
        # return every connection through a background task).
        now = time.monotonic()
        last, conn._checked_out_at = getattr(conn, "_checked_out_at", 0.0), now
        if now - last > IDLE_CHECK_SECONDS:
            await psycopg_pool.AsyncConnectionPool.check_connection(conn)

    class _ReconnectingListen:
        """channels-postgres' receiving side with a LISTEN that survives the database."""

        # The stock listener dies with its connection (a PostgreSQL restart) and leaves
        # its "running" flag set: every consumer of the process then waits forever. This
        # one reconnects with backoff, picks up the messages stored meanwhile, and skips
        # what it already delivered (the stored backlog holds those too until they expire).

        LISTEN_RETRY_MAX = 2.0  # seconds between two tries at most (a try is one connect)
        CHECK_TIMEOUT = 5.0  # seconds for checking the pool's idle connections
        DELIVERED_MEMORY = 50_000  # messages remembered as delivered (channel, id)

        async def listen_to_all_channels(self: Any) -> None:
            delay, lost = 0.2, False
            while True:
                try:
                    if await self._listen_once(lost=lost):
                        return
                except asyncio.CancelledError:
                    raise
                except (psycopg.Error, OSError) as exc:
                    logger.warning("channel layer lost its LISTEN connection (%s); retrying", exc)
                    lost = True
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.LISTEN_RETRY_MAX)
                    continue
                delay, lost = 0.2, False

        async def _drop_dead_connections(self: Any) -> None:
            """What killed the LISTEN connection (a restart) killed the pool's idle ones too:
            check them all once the server answers again (checked while it is down, their
            replacements would back off for as long as the outage lasted). Found one failed
            statement at a time, each cost the listener a retry (5 s apart after a long
            outage) and each sender an error."""
            if isinstance(self.django_db, _OwnPoolDatabase):
                pool = self.django_db._pool
            else:
                pool = pg_db.connection_pool  # the stock layer's, module-global
            if pool is None or not _belongs_to_running_loop(pool):
                return
            # In a task of its own: psycopg_pool's check() takes a cancellation for a broken
            # connection and goes on, so awaited here it would swallow the listener's own
            # cancellation, and a timeout would not stop it. Waited for at most
            # CHECK_TIMEOUT (connections that hang, not fail, are its business after that).
            check = asyncio.ensure_future(pool.check())
            self.__dict__.setdefault("_checks", set()).add(check)
            check.add_done_callback(self._checks.discard)
            check.add_done_callback(_log_check_failure)
            await asyncio.wait({check}, timeout=self.CHECK_TIMEOUT)

        async def _take_backlog(self: Any) -> list[tuple[int, str, bytes, str]]:
            """The stored, unexpired messages of this process's receivers (deleted as they are
            taken), oldest first. channels-postgres' own query took every channel's: after a
            restart the first process back took the others' messages, queued them where
            nobody reads, and they were lost."""
            # This instance's channels: those it receives on, and those it named (a receiver
            # that has not asked yet: its messages wait in its queue).
            receiving = [channel for channel, held in self._channel_advisory_locks.items() if held]
            named = f"%.{self.client_prefix}!%"  # new_channel(): "<prefix>.<client_prefix>!<hex>"
            pool = await self.django_db.get_db_pool(db_params=self.db_params)
            async with pool.connection() as conn:
                cursor = await conn.execute(
                    sql.SQL(
                        "DELETE FROM {} WHERE expire > %s"
                        " AND (channel = ANY(%s) OR channel LIKE %s)"
                        " RETURNING id, channel, message, extract(epoch from expire)::text"
                    ).format(sql.Identifier(pg_db.MESSAGE_TABLE)),
                    (pg_db.utc_now(), receiving, named),
                )
                return sorted(await cursor.fetchall(), key=lambda row: row[0])

        async def _listen_once(self: Any, *, lost: bool = False) -> bool:
            """One LISTEN session; True when told to shut down. ``lost``: the previous
            session's connection died."""
            import base64

            conninfo = psycopg.conninfo.make_conninfo(conninfo="", **self.db_params)
            async with await psycopg.AsyncConnection.connect(
                conninfo=conninfo, autocommit=True
            ) as connection:
                await connection.execute("LISTEN channels_postgres_messages;")
                if lost:
                    await self._drop_dead_connections()
                # The backlog after LISTEN, not before: a message stored in between would
                # have no notification and no reader. (Notified and stored twice: the
                # notification is skipped as already delivered.)
                for message_id, channel, message, timestamp in await self._take_backlog():
                    payload = (
                        f"{message_id}:{channel}:{base64.b64encode(message).decode()}:{timestamp}"
                    )
                    self._deliver(channel, payload)
                assert self.listener_task_is_running is not None
                self.listener_task_is_running.set()
                async for event in connection.notifies():
                    if event.payload == "1:shutdown":
                        self.listener_task_is_running.clear()
                        return True
                    channel = event.payload.split(":")[1]
                    if self._channel_advisory_locks.get(channel, False):
                        self._deliver(channel, event.payload)
            return False

        def _deliver(self: Any, channel: str, payload: str) -> None:
            # Skips exactly what was delivered: rows of concurrent senders commit (and are
            # notified) in any order of their ids, so "at most the highest id seen" lost
            # messages. Beyond the memory, an old message of the backlog comes twice (a
            # snapshot: harmless), never not at all.
            delivered = self.__dict__.setdefault("_delivered", OrderedDict())
            key = (channel, int(payload.split(":", 1)[0]))
            if key in delivered:
                return  # delivered before a reconnect; the stored copy is a duplicate
            delivered[key] = None
            if len(delivered) > self.DELIVERED_MEMORY:
                delivered.popitem(last=False)
            self._get_or_create_queue(channel).put_nowait(payload)

    class PostgresChannelLayer(_ReconnectingListen, pg_core.PostgresChannelLayer):
        """channels-postgres with a per-instance pool, a working discard and quiet sends.

        Use one instance per event loop (``make_private_layer``); the project's
        default backend may point here too (docs/live.md).
        """

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.django_db = _OwnPoolDatabase(
                kwargs.get("PSYCOPG_OPTIONS", {}),
                self.db_params,
                logger=logging.getLogger("config.channel_layer.postgres"),
            )

        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            # The stock method first creates local queues for the group's channels
            # (module-global, for receivers in this process); a sender needs none.
            self.require_valid_group_name(group)
            await self.django_db.send_to_channel(
                self._group_key(group), self.serialize(message), self.expiry
            )

        async def group_send_many(self, pairs: list[tuple[str, dict[str, Any]]]) -> None:
            """Many group sends in two statements: who is in which group, then the inserts.

            Groups nobody listens to (most of a busy tenant's job groups) cost nothing more.
            """
            for group, _message in pairs:
                self.require_valid_group_name(group)
            keys = [self._group_key(group) for group, _message in pairs]
            pool = await self.django_db.get_db_pool(self.db_params)
            async with pool.connection() as conn:
                cursor = await conn.execute(
                    sql.SQL(
                        "SELECT DISTINCT group_key, channel FROM {} WHERE group_key = ANY(%s)"
                    ).format(sql.Identifier(pg_db.GROUP_CHANNEL_TABLE)),
                    (sorted(set(keys)),),
                )
                members: dict[str, list[str]] = {}
                for key, channel in await cursor.fetchall():
                    members.setdefault(key, []).append(channel)
                expire = pg_db.utc_now() + timedelta(seconds=self.expiry)
                rows = [
                    (channel, self.serialize(message), expire)
                    for key, (_group, message) in zip(keys, pairs, strict=True)
                    for channel in members.get(key, ())
                ]
                if rows:
                    async with conn.cursor() as insert:
                        await insert.executemany(
                            sql.SQL(
                                "INSERT INTO {} (channel, message, expire) VALUES (%s, %s, %s)"
                            ).format(sql.Identifier(pg_db.MESSAGE_TABLE)),
                            rows,
                        )

        async def groups_with_members(self, pattern: str) -> set[str]:
            """The groups named like ``pattern`` (``*``: any text) that have a member (the live
            publisher skips job-level messages to the others)."""
            prefix = self._group_key("")
            like = _like(prefix) + _like(pattern).replace("*", "%")
            pool = await self.django_db.get_db_pool(self.db_params)
            async with pool.connection() as conn:
                cursor = await conn.execute(
                    sql.SQL("SELECT DISTINCT group_key FROM {} WHERE group_key LIKE %s").format(
                        sql.Identifier(pg_db.GROUP_CHANNEL_TABLE)
                    ),
                    (like,),
                )
                return {key[len(prefix) :] for (key,) in await cursor.fetchall()}

        async def close_pools(self) -> None:
            await self.django_db.close()

    class ReconnectingPostgresChannelLayer(_ReconnectingListen, pg_core.PostgresChannelLayer):
        """The stock layer (its module-global pool, what consumers and tests expect) with a
        LISTEN that survives a database restart: the configured backend."""

else:  # pragma: no cover

    class PostgresChannelLayer:  # type: ignore[no-redef]
        pass

    class ReconnectingPostgresChannelLayer:  # type: ignore[no-redef]
        pass


# A missing group is normal for live sends (nobody watches that job): not a warning.
logging.getLogger("config.channel_layer.postgres").setLevel(logging.ERROR)


def _like(text: str) -> str:
    """``text`` matched literally by SQL ``LIKE``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def make_private_layer(alias: str = DEFAULT_CHANNEL_LAYER, *, name: str = ""):
    """A new layer instance from settings, for one long-lived event loop.

    Unlike ``get_channel_layer`` (one shared instance per process), its connections
    belong to the loop that uses it; close it with ``close_private_layer``. ``name``
    labels its PostgreSQL connections (``application_name``).
    """
    from channels.layers import channel_layers
    from django.utils.module_loading import import_string

    config = channel_layers.configs[alias]
    backend = import_string(config["BACKEND"])
    if pg_core is not None and issubclass(backend, pg_core.PostgresChannelLayer):
        layer = PostgresChannelLayer(**dict(config.get("CONFIG", {})))
        layer.django_db.application_name = name  # visible in pg_stat_activity
        return layer
    return backend(**dict(config.get("CONFIG", {})))


async def close_private_layer(layer) -> None:
    close_pools = getattr(layer, "close_pools", None)
    if close_pools is not None:
        await close_pools()
