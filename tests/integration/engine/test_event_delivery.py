"""Events are delivered after commit in the order emitted; those of a rolled-back savepoint
are dropped with it, though one transaction's events share on-commit hooks (issue 17)."""

from __future__ import annotations

import contextlib

import pytest
from django.db import transaction

from orchestration import events


class _Undone(Exception):
    pass


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_savepoint_drops_its_events_and_the_rest_keep_their_order():
    seen: list[str] = []
    recorder = events.EventRecorder()
    events.subscribe(recorder)
    events.subscribe_batches(lambda delivered: seen.append(f"batch of {len(delivered)}"))
    subscriber = events._batch_subscribers[-1]
    try:
        with transaction.atomic():
            events.emit("job_status", status="a", job_id=1)
            with contextlib.suppress(_Undone), transaction.atomic():
                events.emit("job_status", status="undone", job_id=1)
                raise _Undone
            events.emit("job_status", status="b", job_id=1)
            transaction.on_commit(lambda: seen.append("another hook"))
            events.emit("job_status", status="c", job_id=1)
            assert recorder.events == []  # nothing before the commit
        assert [e.status for e in recorder.events] == ["a", "b", "c"]
        # a and b share a hook; the hook registered after b runs before c's.
        assert seen == ["batch of 2", "another hook", "batch of 1"]
    finally:
        events.unsubscribe(recorder)
        events.unsubscribe_batches(subscriber)


@pytest.mark.django_db(transaction=True)
def test_a_committed_savepoint_keeps_its_events():
    recorder = events.EventRecorder()
    events.subscribe(recorder)
    try:
        with transaction.atomic():
            events.emit("job_status", status="a", job_id=1)
            with transaction.atomic():
                events.emit("job_status", status="inner", job_id=1)
            events.emit("job_status", status="b", job_id=1)
        assert [e.status for e in recorder.events] == ["a", "inner", "b"]
        assert recorder.events[0].timestamp <= recorder.events[-1].timestamp
    finally:
        events.unsubscribe(recorder)
