"""What an engine event becomes on the live channel: snapshot messages and their groups.

Pure shaping, no sending (``orchestration.live.publisher`` sends): which groups show an
event, which message is final (never dropped, never delayed), which is throttled (a
batch's progress) and which goes before the job-level backlog (batch-level).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

from django_tenants.utils import get_public_schema_name

from orchestration import events
from orchestration.states import BATCH_TERMINAL, JOB_TERMINAL, JobStatus, TaskStatus

LIVE_MESSAGE = "live.message"  # the channel-layer type; LiveConsumer.live_message sends it on

_TASK_DONE = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})

# The step and run messages ``outgoing_for`` sends to a job's group only, never to the
# overview or a batch (a socket watching a job for its status only leaves them out).
STEP_TYPES = frozenset({"task_progress", "run_started", "run_completed"})


def group_name(schema: str, kind: str, pk: int | None = None) -> str:
    """``t.<schema>.overview``, ``t.<schema>.batch.<id>``, ``t.<schema>.job.<id>``."""
    return f"t.{schema}.{kind}" if pk is None else f"t.{schema}.{kind}.{pk}"


class Outgoing(NamedTuple):  # a named tuple: made once per message, cheaply
    group: str
    key: tuple  # the entity the message is a snapshot of, e.g. ("batch_progress", 5)
    message: dict[str, Any]
    final: bool = False  # never dropped, never delayed
    throttled: bool = False  # at most one per PROGRESS_INTERVAL per (group, key)
    urgent: bool = False  # batch-level: goes before any job-level backlog


@functools.cache
def _public_schema() -> str:
    return get_public_schema_name()  # a settings lookup per event showed in profiles


def _everyone(group: str) -> bool:
    return True


def outgoing_for(
    event: events.Event,
    watched: Callable[[str], bool] = _everyone,
    committed: float | None = None,
) -> list[Outgoing]:
    """The messages one engine event becomes, with their groups. ``watched(group)`` says
    whether a job's group may have members: a job-level message goes only to those (the
    overview and batch groups get theirs regardless). ``committed``: when its transaction
    committed, as this process saw it (the messages' ``committed``)."""
    schema = event.tenant
    if not schema or schema == _public_schema():
        return []
    overview = group_name(schema, "overview")
    batch = group_name(schema, "batch", event.batch_id) if event.batch_id else None
    job = group_name(schema, "job", event.job_id) if event.job_id else None

    if event.type in ("batch_progress", "complete") and batch:
        message = event.as_message(committed)
        groups = (overview, batch)
        key = ("batch_progress", event.batch_id)
        if event.type == "complete":
            # The final progress snapshot, then ``complete``: a batch's stream ends there.
            final_progress = dict(message, type="batch_progress")
            return [
                *(Outgoing(g, key, final_progress, final=True, urgent=True) for g in groups),
                *(
                    Outgoing(g, ("complete", event.batch_id), message, final=True, urgent=True)
                    for g in groups
                ),
            ]
        final = event.status in BATCH_TERMINAL
        return [Outgoing(g, key, message, final=final, throttled=True, urgent=True) for g in groups]

    if job is not None and not watched(job):
        job = None  # nobody watches this job: only what overview and batch pages show goes out
    # (its key, final?, also on the overview and its batch's page?)
    if event.type == "job_status" and event.job_id:
        # Failures, jobs backing off and reservations: dashboards and batch pages count and
        # list them (a batch page watches the jobs it shows through their own groups).
        key, final, shared = (
            ("job_status", event.job_id),
            event.status in JOB_TERMINAL,
            _overview_shows(event),
        )
    elif event.type == "task_progress" and event.job_id:
        key, final, shared = ("task_progress", event.task_id), event.status in _TASK_DONE, False
    elif event.type.startswith("run_") and event.job_id:
        key, final, shared = (event.type, event.run_id), True, event.type == "run_failed"
    elif event.job_id:
        key, final, shared = (event.type, event.job_id), False, False
    else:
        return (
            [Outgoing(batch, (event.type, event.batch_id), event.as_message(committed))]
            if batch
            else []
        )
    if not (job or shared):
        return []  # made for nobody: not even its message is built
    message = event.as_message(committed)
    out = [Outgoing(job, key, message, final=final)] if job else []
    if shared:
        out.extend(Outgoing(g, key, message, final=final) for g in (overview, batch) if g)
    return out


_WATCHED_ON_OVERVIEW = frozenset({JobStatus.FAILED, JobStatus.RETRYING})


def _overview_shows(event: events.Event) -> bool:
    """Dashboards list failures, jobs backing off and run-now reservations: a job's status
    goes to the overview when it enters or leaves one of those."""
    return (
        event.status in _WATCHED_ON_OVERVIEW
        or event.data.get("from") in _WATCHED_ON_OVERVIEW
        or bool(event.data.get("direct"))
    )
