"""Domain events: every transition emits one, after commit, through this one emitter.

Events carry ids and a snapshot of state (status, progress), never model instances,
so a duplicated or dropped delivery never leaves a subscriber with a wrong picture.
Subscribers (the live channel, tests' recorders) register with ``subscribe`` (one event
at a time) or ``subscribe_batches`` (every event one commit delivers, in one call); a
subscriber that raises is logged and does not affect the others.

A busy worker emits a few events per step, so the path is kept cheap (issue 17: it was
about a fifth of a worker's CPU): an event is a named tuple whose time is formatted only
when a message is made of it, and the events of one transaction share one on-commit hook
(per savepoint, so a rolled-back savepoint's events are dropped with it, as Django drops
its hooks).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from django.db import transaction

from tenants.db import current_schema

logger = logging.getLogger(__name__)

_NO_DATA: Mapping[str, Any] = MappingProxyType({})


class Event(NamedTuple):
    type: str  # job_status, task_progress, run_started, run_failed, run_completed, batch_progress, complete
    tenant: str
    status: str
    job_id: int | None = None
    task_id: int | None = None
    run_id: int | None = None
    batch_id: int | None = None
    progress: dict[str, Any] | None = None
    error: str = ""
    data: Mapping[str, Any] = _NO_DATA
    at: float | None = None  # when it was emitted (epoch seconds); None: when it is read

    @property
    def timestamp(self) -> str:
        """ISO 8601, UTC."""
        return datetime.fromtimestamp(time.time() if self.at is None else self.at, UTC).isoformat()

    def as_message(self, committed: float | None = None) -> dict[str, Any]:
        """The live message: ``timestamp`` is when the event was emitted (inside its
        transaction); ``committed``, when given, when the process saw that transaction commit
        (epoch seconds, formatted the same way)."""
        message: dict[str, Any] = {}
        for name, value in zip(_MESSAGE_FIELDS, self, strict=False):
            if value is not None and value != "" and value != {}:
                message[name] = value
        message["timestamp"] = self.timestamp
        if committed is not None:
            message["committed"] = datetime.fromtimestamp(committed, UTC).isoformat()
        return message


_MESSAGE_FIELDS = Event._fields[:-1]  # ``at`` becomes ``timestamp``


Subscriber = Callable[[Event], None]
BatchSubscriber = Callable[[list[Event]], None]
_subscribers: list[Subscriber] = []
_batch_subscribers: list[BatchSubscriber] = []


def subscribe(subscriber: Subscriber) -> Subscriber:
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)
    return subscriber


def unsubscribe(subscriber: Subscriber) -> None:
    if subscriber in _subscribers:
        _subscribers.remove(subscriber)


def subscribe_batches(subscriber: BatchSubscriber) -> BatchSubscriber:
    """Receive every event one commit delivers in one call, in their order."""
    if subscriber not in _batch_subscribers:
        _batch_subscribers.append(subscriber)
    return subscriber


def unsubscribe_batches(subscriber: BatchSubscriber) -> None:
    if subscriber in _batch_subscribers:
        _batch_subscribers.remove(subscriber)


class _Delivery:
    """One on-commit hook delivering the events emitted at one savepoint level, in order."""

    __slots__ = ("events",)

    def __init__(self, event: Event) -> None:
        self.events = [event]

    def __call__(self) -> None:
        _deliver(self.events)


def emit(type: str, *, status: str, **fields: Any) -> Event:
    """Queue an event for delivery when the current transaction commits (at once outside one)."""
    event = Event(type, current_schema(), str(status), at=time.time(), **fields)
    connection = transaction.get_connection()
    if connection.in_atomic_block:
        hooks = connection.run_on_commit
        # Django keeps (savepoint ids, callable, robust) per hook and drops, on a savepoint's
        # rollback, the hooks registered inside it: events join the last hook only when it is
        # ours and was registered at the same savepoint level.
        if hooks:
            sids, last, _robust = hooks[-1]
            if last.__class__ is _Delivery and sids == set(connection.savepoint_ids):
                last.events.append(event)
                return event
        connection.on_commit(_Delivery(event))
    else:  # autocommit: the change is already committed (what on_commit would do, cheaper)
        _deliver([event])
    return event


def _deliver(delivered: list[Event]) -> None:
    for batch_subscriber in list(_batch_subscribers):
        try:
            batch_subscriber(delivered)
        except Exception:
            logger.exception("event subscriber %r failed on %d event(s)", batch_subscriber,
                             len(delivered))  # fmt: skip
    for subscriber in list(_subscribers):
        for event in delivered:
            try:
                subscriber(event)
            except Exception:
                logger.exception("event subscriber %r failed on %s", subscriber, event.type)


class EventRecorder:
    """Collects delivered events (tests, diagnostics)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of_type(self, type: str) -> list[Event]:
        return [e for e in self.events if e.type == type]
