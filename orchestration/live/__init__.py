"""The live channel: engine events become snapshot messages on tenant-prefixed groups.

Subscribed to ``orchestration.events`` when the app is ready, so web and worker
processes both publish. Each event becomes one message per group that shows it:

- ``t.<schema>.overview``: every batch's progress and completion, jobs entering or
  leaving FAILED or RETRYING, run-now reservations, failed runs;
- ``t.<schema>.batch.<id>``: that batch's progress and completion, its jobs entering or
  leaving FAILED or RETRYING, its reservations, failed runs;
- ``t.<schema>.job.<id>``: everything about the job (status, steps, runs).

Messages are snapshots (``type``, ``timestamp``, ``tenant``, ids, ``status``,
``progress``, ``error``), so a duplicate is harmless and a dropped one is fixed by
the next. Sending happens on one background thread per process with its own event
loop and its own channel-layer connections (``Publisher``); callers (on-commit
hooks in workers and web requests) only enqueue. A batch's progress goes out at
most every ``PROGRESS_INTERVAL`` per group; final states (terminal statuses,
``complete``) go out at once and are never dropped. See docs/live.md.

``messages`` shapes events into messages and groups; ``publisher`` sends them; this
module keeps the process's one publisher and subscribes it to the engine's events.
"""

from __future__ import annotations

import atexit
import multiprocessing.util
import os
import threading
import time
from typing import Any

from django.core.signals import setting_changed

from orchestration import events
from orchestration.live.messages import (
    LIVE_MESSAGE,
    STEP_TYPES,
    Outgoing,
    group_name,
    outgoing_for,
)
from orchestration.live.publisher import (
    APPLICATION_NAME,
    CATCH_UP_SECONDS,
    CONCURRENT_SENDS,
    FINAL_SEND_ATTEMPTS,
    IDLE_CLOSE_SECONDS,
    LINGER,
    MAX_PENDING,
    PROGRESS_INTERVAL,
    SEND_CHUNK,
    SEND_TIMEOUT,
    Publisher,
    PublisherStats,
)

__all__ = [
    "APPLICATION_NAME",
    "CATCH_UP_SECONDS",
    "CONCURRENT_SENDS",
    "FINAL_SEND_ATTEMPTS",
    "IDLE_CLOSE_SECONDS",
    "LINGER",
    "LIVE_MESSAGE",
    "MAX_PENDING",
    "PROGRESS_INTERVAL",
    "SEND_CHUNK",
    "SEND_TIMEOUT",
    "STEP_TYPES",
    "Outgoing",
    "Publisher",
    "PublisherStats",
    "flush",
    "get_publisher",
    "group_name",
    "outgoing_for",
    "publish_events",
    "stop_publisher",
]

# --- the process's publisher ---------------------------------------------------------

_publisher: Publisher | None = None
_publisher_lock = threading.Lock()


def get_publisher() -> Publisher:
    """This process's publisher, started on first use (after a fork, a new one)."""
    global _publisher
    current = _publisher
    if current is not None and current.pid == os.getpid() and current.alive:
        return current
    with _publisher_lock:
        if _publisher is None or _publisher.pid != os.getpid() or not _publisher.alive:
            _publisher = Publisher()
            # Forked workers (django-q2) leave through multiprocessing, not atexit.
            multiprocessing.util.Finalize(None, stop_publisher, exitpriority=10)
        return _publisher


def stop_publisher(timeout: float = 2.0) -> None:
    """Send what is queued and stop the thread (exit, tests, a settings change)."""
    global _publisher
    with _publisher_lock:
        current, _publisher = _publisher, None
    if current is not None and current.pid == os.getpid():
        current.stop(timeout)


def flush(timeout: float = 5.0) -> bool:
    """Wait until this process's queued live messages are sent and it knows which job groups
    are watched now (tests, diagnostics)."""
    current = _publisher
    if current is None or current.pid != os.getpid():
        return True
    return current.flush(timeout)


def publish_events(delivered: list[events.Event]) -> None:
    """The messages of the events one commit delivered, handed to the publisher at once
    (called right after the commit: its time is the messages' ``committed``)."""
    committed = time.time()
    publisher = get_publisher()
    watches = publisher.watches
    items = [item for event in delivered for item in outgoing_for(event, watches, committed)]
    if items:
        publisher.publish(items)


def _after_fork_in_child() -> None:
    global _publisher, _publisher_lock
    _publisher, _publisher_lock = None, threading.Lock()


def _on_setting_changed(setting: str, **kwargs: Any) -> None:
    if setting == "CHANNEL_LAYERS":
        stop_publisher()


events.subscribe_batches(publish_events)
setting_changed.connect(_on_setting_changed, dispatch_uid="orchestration-live-layers")
os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(stop_publisher)
