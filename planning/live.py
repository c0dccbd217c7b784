"""A plan's step messages on the job's live group (``t.<schema>.job.<id>``).

Each step sends ``agent_status`` when it starts, ``progress`` inside its long loops and
``complete`` when its work is done, each with ``type``, ``timestamp``, ``tenant``, ``job_id``,
``step`` and ``status``. They go through the engine's live publisher (one background
thread per process, see orchestration/live.py) under a key of their own, so no message of
a plan replaces another: a client sees every one, in order, after the engine's own
``job_status`` / ``task_progress`` messages of the same job.
"""

from __future__ import annotations

import itertools
from typing import Any

from django.utils import timezone

from orchestration import live
from orchestration.steps import StepContext

_sequence = itertools.count(1)


def step_message(ctx: StepContext, type: str, **data: Any) -> dict[str, Any]:
    return {
        "type": type,
        "timestamp": timezone.now().isoformat(),
        "tenant": ctx.schema_name,
        "job_id": ctx.job_id,
        "step": ctx.step_type,
        "step_order": ctx.step_order,
        "attempt": ctx.attempt,
        "status": {"agent_status": "running", "progress": "running"}.get(type, "completed"),
        **data,
    }


def send(ctx: StepContext, type: str, **data: Any) -> dict[str, Any]:
    """Publish one message to the plan job's group (never blocks on the network)."""
    message = step_message(ctx, type, **data)
    group = live.group_name(ctx.schema_name, "job", ctx.job_id)
    key = ("plan_step", ctx.job_id, next(_sequence))  # unique: never coalesced with another
    live.get_publisher().publish([live.Outgoing(group, key, message, final=True)])
    return message


class StepProgress:
    """``progress`` messages for a loop of ``total`` items: at most ``every`` items apart
    and once at the end, with ``done``, ``total`` and ``percent``."""

    def __init__(self, ctx: StepContext, total: int, *, every: int = 0, label: str = ""):
        self.ctx, self.total, self.label = ctx, total, label
        self.every = every or max(1, total // 10)
        self.done = 0

    def advance(self, count: int = 1) -> None:
        before = self.done
        self.done += count
        if self.done >= self.total or self.done // self.every > before // self.every:
            percent = 100 * self.done // self.total if self.total else 100
            send(self.ctx, "progress", progress={"done": self.done, "total": self.total,
                                                "percent": percent, "of": self.label})  # fmt: skip
