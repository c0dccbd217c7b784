"""Domain events: every transition emits one, after commit, through this one emitter.

Events carry ids and a snapshot of state (status, progress), never model instances,
so a duplicated or dropped delivery never leaves a subscriber with a wrong picture.
Subscribers (the live channel, the webhook outbox, tests' recorders) register with
``subscribe``; a subscriber that raises is logged and does not affect the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from django.db import transaction
from django.utils import timezone

from tenants.db import current_schema

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    type: str  # job_status, task_progress, run_started, run_failed, run_completed, batch_progress, complete
    tenant: str
    status: str
    job_id: int | None = None
    task_id: int | None = None
    run_id: int | None = None
    batch_id: int | None = None
    progress: dict[str, Any] | None = None
    error: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    timestamp: str = field(default_factory=lambda: timezone.now().isoformat())

    def as_message(self) -> dict[str, Any]:
        # Shallow (events are never mutated after emit); ``asdict``'s deep copy was the
        # largest single cost of publishing on a busy worker.
        message = {}
        for name in _FIELD_NAMES:
            value = getattr(self, name)
            if value is not None and value != "" and value != {}:
                message[name] = value
        return message


_FIELD_NAMES = tuple(f.name for f in fields(Event))


Subscriber = Callable[[Event], None]
_subscribers: list[Subscriber] = []


def subscribe(subscriber: Subscriber) -> Subscriber:
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)
    return subscriber


def unsubscribe(subscriber: Subscriber) -> None:
    if subscriber in _subscribers:
        _subscribers.remove(subscriber)


def emit(type: str, *, status: str, **fields: Any) -> Event:
    """Queue an event for delivery when the current transaction commits (at once outside one)."""
    event = Event(type=type, tenant=current_schema(), status=str(status), **fields)
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(lambda: _deliver(event))
    else:  # autocommit: the change is already committed (what on_commit would do, cheaper)
        _deliver(event)
    return event


def _deliver(event: Event) -> None:
    for subscriber in list(_subscribers):
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
