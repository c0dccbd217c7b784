"""Load for part 1: no-op jobs in a second tenant, running through the watched batch.

A load run gives the cluster ``--load-workers`` processes and a batch of ``--load-jobs``
``noopmkt.noop5`` jobs (5 no-op steps each, provider in ``tests/engine_providers.py``) in the
tenant ``load``. The enqueue child starts the load right after the warm-up, waits until it has
committed ``--load-lead-steps`` steps, and only then enqueues the watched batch; the load is
cancelled once the watched batch is done. The step rate achieved is measured afterwards from
``MarketplaceTask.completed_at`` over the observed window (first watched job started → the
watched batch completed): the load tenant's steps, all steps, and per-second buckets.

Two ways to run it (``--loads``): ``durable`` (the default commit, ``synchronous_commit`` on)
and ``async`` (the operator's opt-out ``ORCHESTRATION_SYNCHRONOUS_COMMIT=0``).
"""

from __future__ import annotations

import argparse
import statistics
from datetime import datetime
from typing import Any

LOAD_SCHEMA = "load"

LOAD_MARKETPLACE, LOAD_ACTION, LOAD_STEPS = "noopmkt", "noop5", 5

# Each load mode's environment for the cluster (on top of the layer's).
LOAD_MODES: dict[str, dict[str, str]] = {
    "none": {},
    "durable": {"ORCHESTRATION_SYNCHRONOUS_COMMIT": "1"},
    "async": {"ORCHESTRATION_SYNCHRONOUS_COMMIT": "0"},
}

TARGET_STEPS_PER_S = 1000.0


def load_env(args: argparse.Namespace, env: dict[str, str], mode: str) -> dict[str, str]:
    out = dict(env, **LOAD_MODES[mode])
    if mode != "none":
        out["Q_WORKERS"] = str(args.load_workers)
    return out


def create_load_batch(args: argparse.Namespace, label: str) -> int:
    from django_tenants.utils import schema_context

    from orchestration.services import JobSpec, batch_create

    with schema_context(LOAD_SCHEMA):
        batch = batch_create(
            name=f"load {label}",
            jobs=[JobSpec(marketplace=LOAD_MARKETPLACE, action=LOAD_ACTION)] * args.load_jobs,
            start=False,
        )
    return batch.pk


def wait_for_load(batch_id: int, lead_steps: int, timeout: float) -> None:
    """In the enqueue child: until the load batch has committed ``lead_steps`` steps."""
    import time

    from django_tenants.utils import schema_context

    from orchestration.models import MarketplaceTask
    from orchestration.states import TaskStatus

    deadline = time.monotonic() + timeout
    with schema_context(LOAD_SCHEMA):
        while (
            MarketplaceTask.objects.filter(
                job__batch_id=batch_id, status=TaskStatus.COMPLETED
            ).count()
            < lead_steps
        ):
            if time.monotonic() > deadline:
                raise SystemExit(f"load batch {batch_id} did not reach {lead_steps} steps")
            time.sleep(0.1)


def cancel_load(batch_id: int) -> None:
    from django_tenants.utils import schema_context

    from orchestration.services import batch_cancel

    with schema_context(LOAD_SCHEMA):
        batch_cancel(batch_id=batch_id)


def _step_times(schema: str, since: datetime, until: datetime) -> list[datetime]:
    """``completed_at`` of the schema's steps committed in [since, until]."""
    from django_tenants.utils import schema_context

    from orchestration.models import MarketplaceTask
    from orchestration.states import TaskStatus

    with schema_context(schema):
        return [
            t
            for t in MarketplaceTask.objects.filter(
                status=TaskStatus.COMPLETED, completed_at__gte=since, completed_at__lte=until
            )
            .values_list("completed_at", flat=True)
            .order_by("completed_at")
            if t is not None
        ]


def achieved_rate(
    load_batch_id: int, watched_schema: str, start: datetime | None, end: datetime | None
) -> dict[str, Any]:
    """Steps committed per second over the observed window, from the database."""
    from django.db.models import Max, Min
    from django_tenants.utils import schema_context

    from orchestration.models import MarketplaceTask
    from orchestration.states import TaskStatus

    if not start or not end or end <= start:
        return {"window_s": None}
    seconds = (end - start).total_seconds()
    load_steps = _step_times(LOAD_SCHEMA, start, end)
    watched_steps = _step_times(watched_schema, start, end)
    buckets = [0] * max(1, int(seconds))
    for t in load_steps + watched_steps:
        buckets[min(int((t - start).total_seconds()), len(buckets) - 1)] += 1
    with schema_context(LOAD_SCHEMA):
        span = MarketplaceTask.objects.filter(
            job__batch_id=load_batch_id, status=TaskStatus.COMPLETED
        ).aggregate(first=Min("completed_at"), last=Max("completed_at"))
    covered = bool(span["first"] and span["first"] <= start and span["last"] >= end)
    full = buckets[:-1] if len(buckets) > 1 else buckets  # the last bucket is partial
    return {
        "window_s": round(seconds, 2),
        "window": "first watched job started -> watched batch completed (database clock)",
        "load_steps": len(load_steps),
        "load_steps_per_s": round(len(load_steps) / seconds, 1),
        "all_steps_per_s": round((len(load_steps) + len(watched_steps)) / seconds, 1),
        "steps_per_second_buckets": buckets,
        "min_1s_bucket": min(full),
        "median_1s_bucket": statistics.median(full),
        "load_covered_window": covered,
        "load_first_step_before_window_s": (
            round((start - span["first"]).total_seconds(), 2) if span["first"] else None
        ),
        "load_last_step_after_window_s": (
            round((span["last"] - end).total_seconds(), 2) if span["last"] else None
        ),
        "target_steps_per_s": TARGET_STEPS_PER_S,
        "target_reached": len(load_steps) / seconds >= TARGET_STEPS_PER_S,
    }
