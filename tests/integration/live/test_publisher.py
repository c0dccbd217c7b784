"""The live publisher: engine events become snapshot messages on tenant-prefixed groups."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from datetime import datetime

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.utils import timezone

from config.channel_layer import group_discard
from orchestration import events, live
from tests.conftest import _ensure_tenant
from tests.integration.live.layers import listening_channel
from tests.integration.live.scenarios import create_batch, start_batch


class RecordingLayer:
    """Stands in for a channel layer: records what was sent, and when."""

    def __init__(self, fail_first: int = 0):
        self.sent: list[tuple[float, str, dict]] = []
        self.fail_first = fail_first

    async def group_send(self, group, message):
        if self.fail_first:
            self.fail_first -= 1
            raise ConnectionError("layer down")
        self.sent.append((time.monotonic(), group, message["message"]))


class HeldLayer(RecordingLayer):
    """A layer that does not answer until the test sets its ``gate``."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    async def group_send(self, group, message):
        while not self.gate.is_set():
            await asyncio.sleep(0.005)
        await super().group_send(group, message)


def _event(type_, status, *, batch_id=7, percent=0, **fields):
    progress = {"percent": percent, "done": percent, "total": 100}
    return events.Event(type=type_, tenant="acme", status=status, batch_id=batch_id,
                        progress=progress, **fields)  # fmt: skip


def test_groups_are_prefixed_with_the_schema():
    assert live.group_name("acme", "overview") == "t.acme.overview"
    assert live.group_name("acme", "batch", 5) == "t.acme.batch.5"
    assert live.group_name("acme", "job", 9) == "t.acme.job.9"
    groups = {o.group for o in live.outgoing_for(_event("batch_progress", "running"))}
    assert groups == {"t.acme.overview", "t.acme.batch.7"}
    job = events.Event(type="task_progress", tenant="acme", status="running", job_id=3, task_id=4)
    assert [o.group for o in live.outgoing_for(job)] == ["t.acme.job.3"]
    assert live.outgoing_for(events.Event(type="job_status", tenant="public", status="x")) == []


def test_step_messages_go_to_their_job_group_only():
    """What a statuses_only socket leaves out (consumers) must never come through a batch or
    the overview, whatever their status: only the job's group carries them."""
    for type_ in live.STEP_TYPES:
        for status in ("running", "completed", "failed", "cancelled"):
            event = events.Event(type=type_, tenant="acme", status=status, batch_id=7,
                                 job_id=3, task_id=11, run_id=5)  # fmt: skip
            groups = {o.group for o in live.outgoing_for(event)}
            assert groups == {"t.acme.job.3"}, (type_, status, groups)
    failed = events.Event(type="run_failed", tenant="acme", status="failed", batch_id=7,
                          job_id=3, run_id=5)  # fmt: skip
    assert "t.acme.batch.7" in {o.group for o in live.outgoing_for(failed)}


def test_batch_progress_is_coalesced_and_final_states_always_go_out():
    layer = RecordingLayer()
    publisher = live.Publisher(layer_factory=lambda: layer, interval=0.1)
    try:
        started = time.monotonic()
        for percent in range(0, 100):  # 100 updates in ~0.2 s
            publisher.publish(
                live.outgoing_for(_event("batch_progress", "running", percent=percent))
            )
            time.sleep(0.002)
        publisher.publish(live.outgoing_for(_event("complete", "completed", percent=100)))
        # The engine emits the terminal progress after ``complete``: the same state, not re-sent.
        publisher.publish(live.outgoing_for(_event("batch_progress", "completed", percent=100)))
        assert publisher.flush(5)
        elapsed = time.monotonic() - started
    finally:
        publisher.stop()
    batch = [(t, m) for t, g, m in layer.sent if g == "t.acme.batch.7"]
    progress_times = [
        t for t, m in batch if m["type"] == "batch_progress" and m["status"] == "running"
    ]
    # At most one progress message per 100 ms (plus the first), far fewer than 100.
    assert len(progress_times) <= elapsed / 0.1 + 2
    assert all(b - a >= 0.09 for a, b in itertools.pairwise(progress_times))
    types = [m["type"] for _, m in batch]
    assert types[-2:] == ["batch_progress", "complete"]
    assert batch[-2][1]["status"] == "completed" and batch[-2][1]["progress"]["percent"] == 100
    assert types.count("complete") == 1
    assert [m["type"] for t, g, m in layer.sent if g == "t.acme.overview"][-1] == "complete"


def test_a_final_state_survives_a_failing_send():
    layer = RecordingLayer(fail_first=2)
    publisher = live.Publisher(layer_factory=lambda: layer)
    try:
        publisher.publish(
            live.outgoing_for(
                events.Event(type="job_status", tenant="acme", status="failed", job_id=1)
            )
        )
        assert publisher.flush(5)
    finally:
        publisher.stop()
    assert [(g, m["status"]) for _, g, m in layer.sent] == [
        ("t.acme.job.1", "failed"),
        ("t.acme.overview", "failed"),
    ]
    assert publisher.stats.errors >= 1


def test_a_newer_snapshot_goes_after_what_was_queued_before_it():
    """A job's ``running`` is still lingering when its steps and its end arrive (a quick job,
    a busy publisher): the job's ``completed`` replaces ``running`` and must go out after the
    steps' progress, not in ``running``'s old place before them."""
    layer = HeldLayer()
    gate = layer.gate
    publisher = live.Publisher(layer_factory=lambda: layer)

    def job(status):
        return events.Event(type="job_status", tenant="acme", status=status, job_id=3)

    def step(task_id, status):
        return events.Event(type="task_progress", tenant="acme", status=status, job_id=3,
                            task_id=task_id)  # fmt: skip

    try:
        publisher.publish(live.outgoing_for(job("queued")))  # held: the layer is not answering
        time.sleep(0.05)
        publisher.publish(live.outgoing_for(job("running")))
        for task_id in (1, 2, 3):
            publisher.publish(live.outgoing_for(step(task_id, "running")))
            publisher.publish(live.outgoing_for(step(task_id, "completed")))
        publisher.publish(live.outgoing_for(job("completed")))
        gate.set()
        assert publisher.flush(5)
    finally:
        gate.set()
        publisher.stop()
    sent = [(m["type"], m.get("task_id"), m["status"]) for _, g, m in layer.sent]
    assert sent == [
        ("job_status", None, "queued"),
        ("task_progress", 1, "completed"),
        ("task_progress", 2, "completed"),
        ("task_progress", 3, "completed"),
        ("job_status", None, "completed"),
    ], sent


def test_publishing_from_many_threads_never_blocks_on_the_layer():
    layer = HeldLayer()
    gate = layer.gate
    publisher = live.Publisher(layer_factory=lambda: layer)
    try:

        def emit(n):
            for i in range(50):
                event = events.Event(type="task_progress", tenant="acme", status="running",
                                     job_id=n + 1, task_id=1000 * n + i)  # fmt: skip
                publisher.publish(live.outgoing_for(event))

        threads = [threading.Thread(target=emit, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)  # a liveness bound: publishing must not wait for the stuck layer
        assert not any(t.is_alive() for t in threads), "publish() blocked on the layer"
        assert layer.sent == []  # 200 messages queued, none could be sent yet
        gate.set()
        assert publisher.flush(30)
    finally:
        gate.set()
        publisher.stop()
    assert len(layer.sent) == 200


class ChunkLayer:
    """Records each ``group_send_many`` call: when, and how many messages."""

    def __init__(self):
        self.chunks: list[tuple[float, int]] = []

    async def group_send_many(self, pairs):
        self.chunks.append((time.monotonic(), len(pairs)))


def test_a_busy_publisher_sends_job_messages_in_spaced_chunks():
    """Job-level messages that keep coming go out at most once per ``BUSY_INTERVAL`` (each
    send has a fixed cost); none is lost, and a message after a quiet spell goes at once
    (after ``LINGER``), not a busy interval later."""
    layer = ChunkLayer()
    publisher = live.Publisher(layer_factory=lambda: layer, busy_interval=0.05, linger=0.005)
    try:
        started = time.monotonic()
        for i in range(300):  # ~1 message per ms, each of a different step
            event = events.Event(type="task_progress", tenant="acme", status="running",
                                 job_id=1 + i // 5, task_id=i)  # fmt: skip
            publisher.publish(live.outgoing_for(event))
            time.sleep(0.001)
        busy = time.monotonic() - started
        assert publisher.flush(5)
        sent_during_busy = [n for t, n in layer.chunks if t <= started + busy]
        # Spaced by 50 ms: at most one chunk per 50 ms of publishing (a 5 ms linger alone
        # would send one every ~5 ms, ten times as many).
        assert len(sent_during_busy) <= busy / 0.05 + 2, (len(sent_during_busy), busy)
        assert sum(n for _, n in layer.chunks) == 300
        time.sleep(0.2)  # quiet
        quiet_chunks = len(layer.chunks)
        publisher.publish(
            live.outgoing_for(
                events.Event(
                    type="task_progress", tenant="acme", status="running", job_id=999, task_id=9999
                )
            )
        )
        assert publisher.flush(5)
        assert len(layer.chunks) == quiet_chunks + 1
    finally:
        publisher.stop()


async def _collect_until(layer, channel, done, timeout=20.0) -> list[dict]:
    received: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out; got {[m.get('type') for m in received]}"
        envelope = await asyncio.wait_for(layer.receive(channel), timeout=remaining)
        assert envelope["type"] == live.LIVE_MESSAGE
        received.append(envelope["message"])
        if done(envelope["message"]):
            return received


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_running_batch_reaches_its_group_and_ends_in_complete(layer_kind, clean_tenants):
    alpha = await sync_to_async(_ensure_tenant)("alpha")
    layer, channel = await listening_channel()
    await layer.group_add("t.test_alpha.overview", channel)
    batch_id = await sync_to_async(create_batch)(alpha, 3)
    await layer.group_add(f"t.test_alpha.batch.{batch_id}", channel)
    await sync_to_async(start_batch)(alpha, batch_id)
    messages = await _collect_until(layer, channel, lambda m: m["type"] == "complete")
    batch_messages = [m for m in messages if m.get("batch_id") == batch_id]
    for message in batch_messages:
        assert message["tenant"] == "test_alpha"
        assert message["timestamp"] and message["status"]
        assert set(message["progress"]) >= {"done", "total", "percent"}
    progress = [m for m in batch_messages if m["type"] == "batch_progress"]
    assert progress, messages
    percents = [m["progress"]["percent"] for m in progress]
    assert percents == sorted(percents) and percents[-1] == 100
    assert batch_messages[-1]["type"] == "complete"
    assert batch_messages[-1]["status"] == "completed"
    await group_discard(layer, f"t.test_alpha.batch.{batch_id}", channel)
    await group_discard(layer, "t.test_alpha.overview", channel)


def _kill_publisher_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            [live.APPLICATION_NAME],
        )
        return cursor.fetchone()[0]


def _job_failed(job_id: int) -> None:
    event = events.Event(type="job_status", tenant="test_alpha", status="failed", job_id=job_id)
    live.publish_events([event])


def _job_failed_after_a_slow_commit(job_id: int, hold: float) -> None:
    from django.db import transaction

    with transaction.atomic():
        events.emit("job_status", status="failed", job_id=job_id)
        time.sleep(hold)  # the rest of a long transaction


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_message_says_when_its_transaction_committed(clean_tenants, release_channel_layer):
    """``timestamp`` is the emit, inside the transaction; ``committed`` is after its commit:
    what the live latency is measured from (bench/live_admin)."""
    live.stop_publisher()
    layer, channel = await listening_channel()
    await layer.group_add("t.test_alpha.job.42", channel)
    await sync_to_async(_ensure_tenant)("alpha")

    def in_alpha():
        from django_tenants.utils import schema_context

        with schema_context("test_alpha"):
            _job_failed_after_a_slow_commit(42, 0.3)
        return time.time()

    returned = await sync_to_async(in_alpha)()
    message = (await asyncio.wait_for(layer.receive(channel), timeout=10))["message"]
    emitted = datetime.fromisoformat(message["timestamp"]).timestamp()
    committed = datetime.fromisoformat(message["committed"]).timestamp()
    assert committed - emitted >= 0.3
    assert committed <= returned
    await group_discard(layer, "t.test_alpha.job.42", channel)
    live.stop_publisher()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_publisher_recovers_after_its_database_connections_are_killed(
    clean_tenants, release_channel_layer
):
    live.stop_publisher()
    layer, channel = await listening_channel()
    await layer.group_add("t.test_alpha.job.41", channel)
    await sync_to_async(_job_failed)(41)
    first = await asyncio.wait_for(layer.receive(channel), timeout=10)
    assert first["message"]["job_id"] == 41
    assert await sync_to_async(_kill_publisher_connections)() >= 1
    for _ in range(3):  # each send after the kill is delivered (no stale pool, no 30 s wait)
        await sync_to_async(_job_failed)(41)
        # (a stale pool blocks each send ~30 s: far past this liveness bound)
        again = await asyncio.wait_for(layer.receive(channel), timeout=15)
        assert again["message"]["status"] == "failed"
    live.stop_publisher()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_postgres_layer_sends_many_in_one_round_trip_only_to_listened_groups(
    clean_tenants, release_channel_layer
):
    from config.channel_layer import close_private_layer, make_private_layer

    layer, channel = await listening_channel()
    await layer.group_add("t.x.job.1", channel)
    private = make_private_layer()
    try:
        await private.group_send_many(
            [
                ("t.x.job.1", {"type": "live.message", "n": 1}),
                ("t.x.job.2", {"type": "live.message", "n": 2}),  # nobody listens
                ("t.x.job.1", {"type": "live.message", "n": 3}),
            ]
        )
        first = await asyncio.wait_for(layer.receive(channel), timeout=10)
        second = await asyncio.wait_for(layer.receive(channel), timeout=10)
        assert (first["n"], second["n"]) == (1, 3)
    finally:
        await close_private_layer(private)
        await group_discard(layer, "t.x.job.1", channel)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_postgres_layer_commits_do_not_wait_for_the_wal_flush(release_channel_layer):
    """Live messages are ephemeral: the layer's sessions commit asynchronously, so they do
    not queue behind (or add to) the WAL flushes the workers' durable step commits wait for."""
    from channels.layers import get_channel_layer

    from config.channel_layer import close_private_layer, make_private_layer

    private = make_private_layer()
    try:
        for layer in (private, get_channel_layer()):
            pool = await layer.django_db.get_db_pool(layer.db_params)
            async with pool.connection() as conn:
                cursor = await conn.execute("SHOW synchronous_commit")
                assert (await cursor.fetchone())[0] == "off"
    finally:
        await close_private_layer(private)
    # (The workers' sessions are durable: tests/integration/engine/test_worker_session.py.)


def _kill_listen_connections(also: list[int] = ()) -> int:
    """Terminate the LISTEN connection and the backends ``also``; returns how many."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database()"
            " AND (query LIKE 'LISTEN channels_postgres%%' OR pid = ANY(%s))",
            [list(also)],
        )
        return cursor.fetchone()[0]


def _listening_since(moment: datetime) -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND query LIKE 'LISTEN channels_postgres%%' AND backend_start > %s",
            [moment],
        )
        return cursor.fetchone()[0] == 1


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_receivers_keep_receiving_after_the_listen_connection_is_killed(
    clean_tenants, release_channel_layer
):
    """A PostgreSQL restart kills every connection, the LISTEN one too: a consumer must go on
    receiving (the stock listener died and left every consumer of the process deaf)."""
    layer, channel = await listening_channel()
    await layer.send(channel, {"type": "before", "n": 1})
    assert (await asyncio.wait_for(layer.receive(channel), timeout=10))["n"] == 1
    assert await sync_to_async(_kill_listen_connections)() == 1

    deadline = time.monotonic() + 20
    received: list[int] = []
    n = 1
    while time.monotonic() < deadline and not received:
        n += 1  # sent again until the listener is back: nothing sent after it is lost
        await layer.send(channel, {"type": "after", "n": n})
        with contextlib.suppress(TimeoutError):
            received.append((await asyncio.wait_for(layer.receive(channel), timeout=1))["n"])
    assert received, "no message reached the receiver after its LISTEN connection died"
    # Whatever was stored during the gap arrives once, in order, and nothing twice: read
    # up to a last message sent after all of them (no "nothing more within a second").
    await layer.send(channel, {"type": "after", "n": n + 1})
    while received[-1] != n + 1:
        received.append((await asyncio.wait_for(layer.receive(channel), timeout=10))["n"])
    assert received == sorted(set(received)) and 1 not in received


class TypedChunkLayer:
    """Records each ``group_send_many`` call: when, and the messages' types."""

    def __init__(self):
        self.chunks: list[tuple[float, list[str]]] = []

    async def group_send_many(self, pairs):
        self.chunks.append((time.monotonic(), [m["message"]["type"] for _, m in pairs]))
        self.last_progress = next(
            (m["message"]["progress"] for _, m in reversed(pairs) if "progress" in m["message"]),
            getattr(self, "last_progress", None),
        )


def test_a_throttled_batch_progress_does_not_wake_the_sleeping_publisher():
    """Each job's end announces its batch's progress; while that progress was sent less than
    ``interval`` ago and the publisher wakes before it is due anyway (a chunk of job-level
    messages pending), publishing it makes no wake-up (a self-pipe write and a loop turn
    each). It still goes out on time, and the last one is not lost."""
    layer = TypedChunkLayer()
    publisher = live.Publisher(
        layer_factory=lambda: layer, interval=0.2, busy_interval=0.05, linger=0.005
    )
    pokes: list[float] = []
    original = publisher._poke

    def counting_poke():
        pokes.append(time.monotonic())
        original()

    publisher._poke = counting_poke  # type: ignore[method-assign]
    try:
        started = time.monotonic()
        for i in range(300):  # a step per ms; a job (and its batch's progress) per 5 ms
            event = events.Event(type="task_progress", tenant="acme", status="completed",
                                 job_id=1 + i // 5, task_id=i)  # fmt: skip
            publisher.publish(live.outgoing_for(event))
            if i % 5 == 4:
                done = (i + 1) // 5
                progress = events.Event(type="batch_progress", tenant="acme", status="running",
                                        batch_id=7, progress={"done": done, "total": 60})  # fmt: skip
                publisher.publish(live.outgoing_for(progress))
            time.sleep(0.001)
        busy = time.monotonic() - started
        assert publisher.flush(5)
    finally:
        publisher.stop()
    # 60 progress events and ~busy/50 ms chunks: pokes only to start a chunk's wait.
    assert len(pokes) <= busy / 0.05 + 4, (len(pokes), busy)
    progress_sends = [t for t, types in layer.chunks if "batch_progress" in types]
    # One held back by the throttle went out while publishing went on, with no poke for it.
    assert len([t for t in progress_sends if t <= started + busy]) >= 2, (progress_sends, busy)
    gaps = [b - a for a, b in itertools.pairwise(progress_sends)][:-1]
    assert all(gap >= 0.2 - 0.01 for gap in gaps), gaps  # the throttle holds (not ``flush``)
    assert layer.last_progress == {"done": 60, "total": 60}  # the last snapshot is not lost


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_after_a_restart_the_listener_drops_every_dead_pool_connection_at_once(
    clean_tenants, release_channel_layer, caplog
):
    """A restart kills the pool's idle connections with the LISTEN one. Found one failed
    statement at a time, each cost the listener a retry (5 s apart after a long outage: the
    live pages stayed still for 20 s after the server was back); the reconnected listener
    checks them all first, so its next statement and the next sends get live connections."""
    from channels_postgres import db as pg_db
    from django.utils import timezone

    layer, channel = await listening_channel()
    for n in range(8):  # the pool's connections are open and idle
        await asyncio.gather(*(layer.send(channel, {"type": "warm", "n": n}) for _ in range(4)))
        for _ in range(4):
            await asyncio.wait_for(layer.receive(channel), timeout=10)
    pool = pg_db.connection_pool
    pids = [conn.info.backend_pid for conn in pool._pool]  # its idle connections (a test's peek)
    idle = len(pids)
    assert idle >= 2, pool.get_stats()
    before = pool.get_stats()
    killed_at = await sync_to_async(timezone.now)()
    assert await sync_to_async(_kill_listen_connections)(pids) == 1 + idle  # as a restart does
    deadline = time.monotonic() + 30
    while not await sync_to_async(_listening_since)(killed_at):
        assert time.monotonic() < deadline, "the listener did not come back"
        await asyncio.sleep(0.1)
    found = 0
    while found < idle:  # every dead connection found: by a check, or by a failed statement
        stats = pool.get_stats()
        found = sum(stats.get(k, 0) - before.get(k, 0) for k in ("connections_lost", "returns_bad"))
        assert time.monotonic() < deadline, stats
        await asyncio.sleep(0.1)
    assert pool.get_stats().get("returns_bad", 0) == before.get("returns_bad", 0)
    lost = [r for r in caplog.records if "lost its LISTEN" in r.getMessage()]
    assert len(lost) == 1, [r.getMessage() for r in lost]
    await layer.send(channel, {"type": "after"})  # no dead connection left for a sender
    assert (await asyncio.wait_for(layer.receive(channel), timeout=10))["type"] == "after"


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_notifications_out_of_id_order_all_reach_the_receiver(
    clean_tenants, release_channel_layer
):
    """Two senders' rows can commit in the other order than their ids: the notification of
    the lower id comes second and is a new message all the same. Only a true duplicate (the
    backlog read after a reconnect holds what was already notified) is skipped. (Keeping the
    highest id per channel lost one of four concurrent sends to a channel now and then.)"""
    import base64

    layer, channel = await listening_channel()
    expire = time.time() + 60

    def payload(n: int) -> str:
        message = base64.b64encode(layer.serialize({"type": "t", "n": n})).decode()
        return f"{10_000 + n}:{channel}:{message}:{expire}"

    for n in (5, 4, 5, 6, 4):  # 5 and 4 again: the backlog after a reconnect
        layer._deliver(channel, payload(n))
    received = [(await asyncio.wait_for(layer.receive(channel), timeout=10))["n"] for _ in range(3)]
    assert received == [5, 4, 6]
    await layer.send(channel, {"type": "t", "n": 7})
    assert (await asyncio.wait_for(layer.receive(channel), timeout=10))["n"] == 7  # nothing else


@pytest.mark.asyncio
async def test_a_pool_that_could_not_open_is_closed(settings):
    """With the database down, the publisher's send gives up while the layer's pool is still
    opening: that pool is closed then, not left reconnecting until its loop ends (in make
    run, "Task was destroyed but it is pending!" errors at each database restart)."""
    from config.channel_layer import PostgresChannelLayer, close_private_layer

    config = dict(settings.CHANNEL_LAYERS["default"].get("CONFIG", {}))
    if "HOST" not in config:  # the Redis layer has no pool of its own to leak
        config = {"ENGINE": "django.db.backends.postgresql", "NAME": "x", "USER": "x",
                  "PASSWORD": "", "TIME_ZONE": None}  # fmt: skip
    layer = PostgresChannelLayer(**{**config, "HOST": "127.0.0.1", "PORT": "9"})  # nobody there
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.group_send_many([("g", {"type": "t"})]), timeout=1)
    await close_private_layer(layer)

    def pool_tasks() -> list[str]:
        names = (task.get_name() for task in asyncio.all_tasks())
        return [name for name in names if name.startswith("pool-")]

    deadline = time.monotonic() + 10
    while pool_tasks() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert pool_tasks() == []


@contextlib.asynccontextmanager
async def _pool_not_answering(layer, channel):
    """Every idle connection of the layer's pool with its server process stopped (SIGSTOP; a
    network partition in life), resumed after 15 s at the latest (a test never hangs)."""
    import os
    import signal

    from channels_postgres import db as pg_db

    for _ in range(3):
        await asyncio.gather(*(layer.send(channel, {"type": "t"}) for _ in range(3)))
        for _ in range(3):
            await asyncio.wait_for(layer.receive(channel), timeout=10)
    pids = [conn.info.backend_pid for conn in pg_db.connection_pool._pool]  # a test's peek
    assert pids

    def resume() -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    asyncio.get_running_loop().call_later(15, resume)
    try:
        yield
    finally:
        resume()
        for check in list(layer.__dict__.get("_checks", ())):
            await asyncio.wait_for(check, timeout=30)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_pool_check_after_a_reconnect_gives_up_after_its_timeout(
    clean_tenants, release_channel_layer
):
    """psycopg_pool's check() takes a cancellation for a broken connection and goes on: under
    ``wait_for`` its timeout stopped one connection's check and the next ones ran in full."""
    layer, channel = await listening_channel()
    async with _pool_not_answering(layer, channel):
        layer.CHECK_TIMEOUT = 0.5
        started = time.monotonic()
        await layer._drop_dead_connections()
        assert time.monotonic() - started < 10  # gave up; did not wait for the server (15 s)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_cancelling_the_listener_during_the_pool_check_cancels_it(
    clean_tenants, release_channel_layer
):
    """The check swallowed the listener's own cancellation (close_channel_layers cancels and
    awaits the listener: a loop's shutdown hung on it)."""
    layer, channel = await listening_channel()
    async with _pool_not_answering(layer, channel):
        task = asyncio.create_task(layer._drop_dead_connections())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


def _stored_for(channel: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM channels_postgres_message WHERE channel = %s", [channel]
        )
        return cursor.fetchone()[0]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_reconnecting_process_leaves_the_other_processes_messages_stored(
    clean_tenants, release_channel_layer
):
    """After a restart every process reconnects and reads the messages stored meanwhile. The
    stock query took (deleted) every channel's: the first process back queued the others'
    where nobody reads them, and they were lost. (Another process's channel: another
    ``client_prefix``, a channel this one does not receive on.)"""
    import uuid

    layer, mine = await listening_channel()
    theirs = f"specific.{uuid.uuid4().hex[:5]}!{uuid.uuid4().hex}"  # another process's name
    assert layer.client_prefix not in theirs
    await layer.send(theirs, {"type": "for.the.other.process"})
    killed_at = await sync_to_async(timezone.now)()
    assert await sync_to_async(_kill_listen_connections)() == 1
    deadline = time.monotonic() + 30
    while not await sync_to_async(_listening_since)(killed_at):
        assert time.monotonic() < deadline, "the listener did not come back"
        await asyncio.sleep(0.1)
    await layer.send(mine, {"type": "after"})  # the backlog is read before notifications
    assert (await asyncio.wait_for(layer.receive(mine), timeout=10))["type"] == "after"
    assert await sync_to_async(_stored_for)(theirs) == 1  # still there for its own process
