"""The publisher: one background thread per process with its own event loop and its own
channel-layer connections, fed by a queue, so callers (on-commit hooks) never wait on the
network. It coalesces snapshots of one thing, throttles a batch's progress per group,
sends job-level messages in chunks and retries final ones (docs/live.md).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channels import DEFAULT_CHANNEL_LAYER

from config.channel_layer import close_private_layer, make_private_layer
from orchestration.live.messages import LIVE_MESSAGE, Outgoing

logger = logging.getLogger("orchestration.live")

PROGRESS_INTERVAL = 0.1  # seconds between two progress messages of one batch (per group)
MAX_PENDING = 50_000  # job-level messages waiting to be sent; beyond, non-final ones are dropped
SEND_TIMEOUT = 5.0
SEND_CHUNK = 200  # job-level messages sent together (one membership query with PostgreSQL)
# Job-level messages wait this long for company, so a busy worker sends them in chunks (and a
# step's ``running`` is replaced by its ``completed`` when the step is quick) instead of one
# send per message: a 1,000-steps/s batch cost the publisher ~40% of a worker's CPU without.
LINGER = 0.005
# While job-level messages keep coming, chunks go out at most this often: each send costs the
# publisher ~0.4 ms of Python (with PostgreSQL, a membership query through the async pool)
# whatever its size. Measured in one process running no-op steps: 5 ms between chunks made
# ~0.27 sends per step and ~1.0 ms of CPU per step, 25 ms ~0.1 and ~0.8 ms. A message after
# a quiet spell still waits only ``LINGER``.
BUSY_INTERVAL = 0.025
CONCURRENT_SENDS = 8  # otherwise (Redis): sends in flight at once (its pool is bounded)
IDLE_CLOSE_SECONDS = 60.0  # an idle publisher releases its connections
FINAL_SEND_ATTEMPTS = 5  # with backoff: a final state survives a ~5 s layer outage
APPLICATION_NAME = "orchestration-live"  # the publisher's PostgreSQL connections
# Job-level messages go only to job groups somebody watches (issue 17: publishing every step
# of every job cost a busy worker ~10% of its CPU, and nearly nobody watches most jobs).
# The publisher reads which job groups have members this often while messages flow; a
# reading older than WATCH_MAX_AGE (or none: a layer that cannot tell, a failed read) counts
# every group as watched. A page that starts watching a job gets a second snapshot after
# CATCH_UP_SECONDS (``LiveConsumer``), later than any message dropped before publishers knew.
WATCHED_GROUPS = "t.*.job.*"
WATCH_REFRESH = 0.5
WATCH_MAX_AGE = 1.0
CATCH_UP_SECONDS = 1.5


@dataclass
class _Entry:
    item: Outgoing
    due: float
    attempts: int = 0


@dataclass
class PublisherStats:
    sent: int = 0
    coalesced: int = 0  # replaced by a newer snapshot before it was sent
    dropped: int = 0  # job-level messages beyond MAX_PENDING
    errors: int = 0
    last_error: str = ""


class Publisher:
    """One background thread with its own event loop and channel layer, fed by a queue.

    ``publish`` may be called from any thread; it never blocks on the network.
    """

    def __init__(
        self,
        *,
        alias: str = DEFAULT_CHANNEL_LAYER,
        interval: float = PROGRESS_INTERVAL,
        max_pending: int = MAX_PENDING,
        linger: float = LINGER,
        busy_interval: float = BUSY_INTERVAL,
        watch_refresh: float = WATCH_REFRESH,
        watch_max_age: float = WATCH_MAX_AGE,
        layer_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.pid = os.getpid()
        self.interval = interval
        self.max_pending = max_pending
        self.linger = linger
        self.busy_interval = busy_interval
        self.watch_refresh = watch_refresh
        self.watch_max_age = watch_max_age
        self._last_chunk_sent = -1e9  # monotonic: when the last job-level chunk went out
        self.stats = PublisherStats()
        self._layer_factory = layer_factory or (
            lambda: make_private_layer(alias, name=APPLICATION_NAME)
        )
        self._layer: Any = None
        self._inbox: collections.deque[Outgoing] = collections.deque()
        self._urgent: dict[tuple, _Entry] = {}  # insertion-ordered
        self._normal: collections.OrderedDict[tuple, _Entry] = collections.OrderedDict()
        self._last_sent: dict[tuple, float] = {}
        self._last_snapshot: dict[tuple, tuple] = {}
        self._sending = False
        self._failures_in_a_row = 0
        self._hurry = False
        self._stopping = False
        self._last_activity = time.monotonic()
        self._loop = asyncio.new_event_loop()
        self._wake: asyncio.Event | None = None
        # True while the loop is awake or will wake within ``linger`` anyway: publishers
        # need not poke it (a poke is a self-pipe write and a loop wake-up per event).
        self._poked = False
        # True while it sleeps until a job-level chunk is due: only batch-level (urgent)
        # messages need to wake it.
        self._chunk_pending = False
        # When it wakes at the latest (monotonic; 0 while awake): a batch's progress held back
        # by its throttle until after then needs no poke either (each job's end makes one).
        self._wake_at = 0.0
        # (monotonic time the reading started, job groups with members); None: unknown.
        self._watched: tuple[float, frozenset[str]] | None = None
        self._watch_wanted = -1e9  # monotonic: when a publisher last asked ``watches``
        self._watch_supported = True
        self._watch_attempted = -1e9  # monotonic: when the last reading started (or failed)
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="live-publisher", daemon=True
        )
        self._thread.start()
        ready.wait(5)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    # --- any thread -----------------------------------------------------------------

    def watches(self, group: str) -> bool:
        """Whether a job group may have members (True unless a recent reading says not)."""
        now = time.monotonic()
        self._watch_wanted = now
        known = self._watched
        return known is None or now - known[0] > self.watch_max_age or group in known[1]

    def publish(self, items: list[Outgoing]) -> None:
        self._inbox.extend(items)
        if self._poked or not self._needs_poke(items):
            return
        self._poked = True
        self._poke()

    def _needs_poke(self, items: list[Outgoing]) -> bool:
        """Whether the sleeping loop must wake for these: not when it wakes before they are
        due anyway (job-level ones while a chunk is pending, or due after the loop's next
        wake; a batch's progress already
        pending, or sent less than ``interval`` ago and held back until after the loop's
        next wake)."""
        wake_at = self._wake_at
        for item in items:
            if not item.urgent:
                if self._chunk_pending:
                    continue
                due = max(
                    time.monotonic() + self.linger, self._last_chunk_sent + self.busy_interval
                )
                if due < wake_at:
                    return True
            elif item.final or not item.throttled:
                return True
            else:
                slot = (item.group, *item.key)
                if slot in self._urgent:
                    continue  # the loop wakes for the one pending (this one replaces it)
                if self._last_sent.get(slot, -1e9) + self.interval < wake_at:
                    return True
        return False

    def flush(self, timeout: float = 5.0) -> bool:
        """Send everything queued so far (throttled progress included) and read again which
        job groups are watched; False on timeout."""
        if not self._thread.is_alive():
            return not (self._inbox or self._urgent or self._normal)
        future = asyncio.run_coroutine_threadsafe(self._until_idle(), self._loop)
        try:
            future.result(timeout)
            return True
        except TimeoutError:
            future.cancel()
            return False

    def stop(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        self.flush(timeout)
        self._stopping = True
        self._poke()
        self._thread.join(timeout)

    def _poke(self) -> None:
        wake = self._wake
        if wake is not None:
            with contextlib.suppress(RuntimeError):  # loop closed: the process is ending
                self._loop.call_soon_threadsafe(wake.set)

    # --- the publisher's thread ---------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main(ready))
        finally:
            self._loop.close()

    async def _main(self, ready: threading.Event) -> None:
        self._wake = asyncio.Event()
        ready.set()
        try:
            while True:
                self._absorb_inbox()
                next_read = self._next_watch_read()
                if next_read is not None and next_read <= time.monotonic():
                    await self._read_watched()
                entries = self._next_due(time.monotonic())
                if entries:
                    await self._send(entries)
                    continue
                if self._stopping and not (self._inbox or self._urgent or self._normal):
                    break
                await self._wait(self._wait_seconds(time.monotonic()))
        finally:
            await self._close_layer()

    async def _wait(self, seconds: float) -> None:
        assert self._wake is not None
        # A long sleep must be interruptible by the next publish; a short one (lingering) need
        # not be. The flag is written before the inbox is read, and publishers write the inbox
        # before reading the flag, so an item is either seen here or pokes.
        self._poked = seconds <= self.linger
        self._chunk_pending = bool(self._normal) and seconds <= self.busy_interval
        self._wake_at = time.monotonic() + seconds
        if not self._inbox:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=seconds)
            except TimeoutError:
                if (
                    self._layer is not None
                    and time.monotonic() - self._last_activity > IDLE_CLOSE_SECONDS
                ):
                    await self._close_layer()
                    self._forget_old(time.monotonic())
        self._wake.clear()
        self._chunk_pending = False
        self._wake_at = 0.0

    def _next_watch_read(self) -> float | None:
        """When the watched groups are next read (monotonic): ``watch_refresh`` after the last
        attempt, while publishers ask (messages flow); None while nobody asks."""
        if (
            not self._watch_supported
            or time.monotonic() - self._watch_wanted > IDLE_CLOSE_SECONDS / 4
        ):
            return None
        return self._watch_attempted + self.watch_refresh

    async def _read_watched(self) -> None:
        started = self._watch_attempted = time.monotonic()
        try:
            if self._layer is None:
                self._layer = self._layer_factory()
            reader = getattr(self._layer, "groups_with_members", None)
            if reader is None:  # this layer cannot tell: every group counts as watched
                self._watch_supported = False
                return
            groups = await asyncio.wait_for(reader(WATCHED_GROUPS), timeout=SEND_TIMEOUT)
            self._watched = (started, frozenset(groups))
        except Exception as exc:
            self._watched = None  # unknown: everything is sent until a reading succeeds
            self.stats.errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            logger.warning("live publisher could not read the watched groups: %s", exc)
            await self._close_layer()

    def _wait_seconds(self, now: float) -> float:
        dues = [e.due for e in self._urgent.values()]
        next_read = self._next_watch_read()
        if next_read is not None:
            dues.append(next_read)
        if self._normal:
            dues.append(next(iter(self._normal.values())).due)  # the oldest job-level message
        if dues:
            return max(0.0, min(dues) - now)
        return IDLE_CLOSE_SECONDS / 4

    def _absorb_inbox(self) -> None:
        now = time.monotonic()
        while self._inbox:
            self._absorb(self._inbox.popleft(), now)
            self._last_activity = now

    def _absorb(self, item: Outgoing, now: float) -> None:
        slot = (item.group, *item.key)
        if item.urgent:
            snapshot = (item.message.get("type"), item.message.get("status"),
                        repr(item.message.get("progress")))  # fmt: skip
            if self._last_snapshot.get(slot) == snapshot:
                return  # the same state again (e.g. the terminal progress after ``complete``)
            self._last_snapshot[slot] = snapshot
            due = now
            if item.throttled and not item.final:
                due = max(now, self._last_sent.get(slot, -1e9) + self.interval)
            pending = self._urgent.get(slot)
            if pending is not None:
                self.stats.coalesced += 1
                pending.item, pending.due, pending.attempts = item, min(pending.due, due), 0
            else:
                self._urgent[slot] = _Entry(item, due)
            return
        if slot in self._normal:
            self.stats.coalesced += 1
            self._normal[slot].item = item  # keeps its due time, not its place:
            # the newer state goes after what was queued before it (a job's ``completed``
            # after its steps' progress, though its ``running`` was queued before them)
            self._normal.move_to_end(slot)
        elif len(self._normal) >= self.max_pending and not item.final:
            self.stats.dropped += 1
        else:
            # After a quiet spell in ``linger``; while busy, with the next chunk.
            due = max(now + self.linger, self._last_chunk_sent + self.busy_interval)
            self._normal[slot] = _Entry(item, due)

    def _next_due(self, now: float) -> list[_Entry]:
        due = [slot for slot, entry in self._urgent.items() if entry.due <= now or self._hurry]
        if due:  # every batch-level message due, in one send (in their order)
            return [self._urgent.pop(slot) for slot in due]
        chunk: list[_Entry] = []
        if not self._normal:
            return chunk
        oldest = next(iter(self._normal.values()))
        if oldest.due > now and len(self._normal) < SEND_CHUNK and not self._hurry:
            return chunk  # lingering: more may come to share the send
        while self._normal and len(chunk) < SEND_CHUNK:  # FIFO
            chunk.append(self._normal.popitem(last=False)[1])
        self._last_chunk_sent = now
        return chunk

    async def _send(self, entries: list[_Entry]) -> None:
        """Send a chunk: the batch-level messages due, or up to SEND_CHUNK job-level ones."""
        self._sending = True
        try:
            if self._layer is None:
                self._layer = self._layer_factory()
            pairs = [(e.item.group, {"type": LIVE_MESSAGE, "message": e.item.message})
                     for e in entries]  # fmt: skip
            await asyncio.wait_for(_group_send_many(self._layer, pairs), timeout=SEND_TIMEOUT)
            now = time.monotonic()
            for entry in entries:
                self._last_sent[(entry.item.group, *entry.item.key)] = now
            self._last_activity = now
            self.stats.sent += len(entries)
        except Exception as exc:
            self.stats.errors += 1
            self._failures_in_a_row += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            if self.stats.errors == 1 or self.stats.errors % 100 == 0:
                logger.warning(
                    "live publisher could not send to %s (%s errors so far): %s",
                    entries[0].item.group, self.stats.errors, self.stats.last_error,
                )  # fmt: skip
            await self._close_layer()  # reconnect on the next send
            for entry in entries:
                item = entry.item
                entry.attempts += 1
                if item.final and entry.attempts < FINAL_SEND_ATTEMPTS and not self._stopping:
                    entry.due = time.monotonic()
                    target = self._urgent if item.urgent else self._normal
                    # (unless a newer snapshot of the same thing came meanwhile)
                    target.setdefault((item.group, *item.key), entry)
            # Back off while the layer is failing instead of spinning through the queue.
            await asyncio.sleep(min(0.1 * 2**self._failures_in_a_row, 2.0))
        else:
            self._failures_in_a_row = 0
        finally:
            self._sending = False

    async def _until_idle(self) -> None:
        self._hurry = True
        try:
            while self._inbox or self._urgent or self._normal or self._sending:
                self._poke()
                await asyncio.sleep(0.002)
            if self._watched is not None:
                await self._read_watched()  # a group joined before the flush is known after it
        finally:
            self._hurry = False

    async def _close_layer(self) -> None:
        layer, self._layer = self._layer, None
        if layer is not None:
            try:
                await asyncio.wait_for(close_private_layer(layer), timeout=5)
            except Exception:
                logger.exception("live publisher could not close its channel layer")

    def _forget_old(self, now: float) -> None:
        horizon = now - IDLE_CLOSE_SECONDS
        for slot in [s for s, t in self._last_sent.items() if t < horizon]:
            self._last_sent.pop(slot, None)
            self._last_snapshot.pop(slot, None)


async def _group_send_many(layer: Any, pairs: list[tuple[str, dict[str, Any]]]) -> None:
    """Several group sends: in one round trip when the layer can (``group_send_many``),
    else concurrently, one message per group at a time so each group keeps its order."""
    many = getattr(layer, "group_send_many", None)
    if many is not None:
        await many(pairs)
        return
    pending = list(pairs)
    while pending:
        wave: dict[str, dict[str, Any]] = {}
        rest = []
        for group, message in pending:
            if group in wave or len(wave) >= CONCURRENT_SENDS:
                rest.append((group, message))
            else:
                wave[group] = message
        await asyncio.gather(*(layer.group_send(g, m) for g, m in wave.items()))
        pending = rest
