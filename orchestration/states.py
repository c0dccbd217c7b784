"""The transition table: which status may follow which. Pure Python, no ORM.

Every status write in the engine goes through ``orchestration.engine.transitions``,
which consults this table before its guarded UPDATE; a pair not listed here raises
``ForbiddenTransition`` and nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"  # created; waiting for its turn (sequential group) or to be enqueued
    QUEUED = "queued"  # may be claimed by a worker
    RUNNING = "running"
    RETRYING = "retrying"  # a run failed with a retryable error; waits for run_after
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # an earlier job of its sequential group failed for good


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class BatchStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"  # every job completed
    PARTIAL = "partial"  # finished; some jobs did not complete
    FAILED = "failed"  # finished; no job completed
    CANCELLED = "cancelled"


J, T, R, B = JobStatus, TaskStatus, RunStatus, BatchStatus

JOB_TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    J.PENDING: frozenset({J.QUEUED, J.CANCELLED, J.SKIPPED}),
    J.QUEUED: frozenset({J.RUNNING, J.CANCELLED, J.SKIPPED, J.PENDING}),
    # QUEUED: a claim handed back before its first step (released, no attempt counted).
    J.RUNNING: frozenset({J.COMPLETED, J.FAILED, J.RETRYING, J.CANCELLED, J.QUEUED}),
    J.RETRYING: frozenset({J.RUNNING, J.CANCELLED, J.QUEUED}),
    J.COMPLETED: frozenset({J.QUEUED}),  # only "retry from step N"
    J.FAILED: frozenset({J.QUEUED, J.SKIPPED}),
    J.CANCELLED: frozenset({J.QUEUED, J.PENDING}),  # PENDING: resuming a sequential group
    J.SKIPPED: frozenset({J.QUEUED, J.PENDING, J.CANCELLED}),
}

TASK_TRANSITIONS: Mapping[TaskStatus, frozenset[TaskStatus]] = {
    T.PENDING: frozenset({T.RUNNING, T.CANCELLED}),
    T.RUNNING: frozenset({T.COMPLETED, T.FAILED, T.CANCELLED}),
    T.COMPLETED: frozenset({T.PENDING}),  # only "retry from step N"
    T.FAILED: frozenset({T.RUNNING, T.PENDING, T.CANCELLED}),
    T.CANCELLED: frozenset({T.PENDING}),
}

RUN_TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = {
    R.RUNNING: frozenset({R.COMPLETED, R.FAILED, R.CANCELLED}),
    R.COMPLETED: frozenset(),
    R.FAILED: frozenset(),
    R.CANCELLED: frozenset(),
}

BATCH_TRANSITIONS: Mapping[BatchStatus, frozenset[BatchStatus]] = {
    B.PENDING: frozenset({B.RUNNING, B.COMPLETED, B.PARTIAL, B.FAILED, B.CANCELLED}),
    B.RUNNING: frozenset({B.COMPLETED, B.PARTIAL, B.FAILED, B.CANCELLED}),
    B.COMPLETED: frozenset({B.RUNNING}),
    B.PARTIAL: frozenset({B.RUNNING}),
    B.FAILED: frozenset({B.RUNNING}),
    B.CANCELLED: frozenset({B.RUNNING}),
}

JOB_TERMINAL = frozenset({J.COMPLETED, J.FAILED, J.CANCELLED, J.SKIPPED})
JOB_CLAIMABLE = frozenset({J.QUEUED, J.RETRYING})
# In line to run or running: a sequential group has at most one such job at a time.
JOB_ACTIVE = frozenset({J.QUEUED, J.RETRYING, J.RUNNING})
JOB_CANCELLABLE_AT_ONCE = frozenset({J.PENDING, J.QUEUED, J.RETRYING, J.SKIPPED})
JOB_RETRYABLE_BY_STAFF = frozenset({J.FAILED, J.CANCELLED})
BATCH_TERMINAL = frozenset({B.COMPLETED, B.PARTIAL, B.FAILED, B.CANCELLED})

TABLES: Mapping[str, Mapping] = {
    "job": JOB_TRANSITIONS,
    "task": TASK_TRANSITIONS,
    "run": RUN_TRANSITIONS,
    "batch": BATCH_TRANSITIONS,
}


class ForbiddenTransition(Exception):
    """A status change the table does not allow; nothing was written."""

    def __init__(self, kind: str, pk: object, current: str, target: str):
        super().__init__(f"{kind} {pk}: {current} → {target} is not allowed")
        self.kind, self.pk, self.current, self.target = kind, pk, current, target


def allowed(kind: str, current: str, target: str) -> bool:
    table = TABLES[kind]
    try:
        return target in table[current]
    except KeyError:
        return False


def sources(kind: str, target: str) -> frozenset[str]:
    """Every status from which ``target`` may be reached (for guarded UPDATEs)."""
    return frozenset(str(src) for src, targets in TABLES[kind].items() if target in targets)


def check(kind: str, pk: object, current: str, target: str) -> None:
    if not allowed(kind, current, target):
        raise ForbiddenTransition(kind, pk, current, target)
