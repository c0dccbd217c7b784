"""The engine's runs: a batch of no-op jobs under a real cluster, and the rate curve of a limited resource."""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench import harness
from bench.engine_throughput.constants import (
    ACTION,
    MARKETPLACE,
    NAME,
    RATE_PER_MINUTE,
    SCHEMA,
    STEPS_PER_JOB,
)
from bench.engine_throughput.meter import Meter, Poller, db_stats, drain, stats_delta


def provision(env: dict[str, str]) -> dict[str, float]:
    migrate_s = harness.migrate(env)
    _, tenant_s = harness.manage(
        "create_tenant",
        "--name",
        "Bench",
        "--schema",
        SCHEMA,
        "--domain",
        "bench.localhost",
        env=env,
    )
    print(f"  migrated in {migrate_s:.1f}s, tenant '{SCHEMA}' in {tenant_s:.1f}s")
    return {"migrate_schemas_s": round(migrate_s, 2), "create_tenant_s": round(tenant_s, 2)}


def run_engine(
    args: argparse.Namespace, env: dict[str, str], url: str, dbname: str
) -> dict[str, Any]:
    from django.db.models import Count, Max, Min
    from django.utils import timezone
    from django_q.models import Task
    from django_tenants.utils import schema_context

    from orchestration.models import Batch, JobRun, MarketplaceTask
    from orchestration.services import JobSpec, batch_create
    from orchestration.states import BATCH_TERMINAL, BatchStatus, TaskStatus

    total = args.jobs
    steps = total * STEPS_PER_JOB
    print(f"  engine: creating a batch of {total} {MARKETPLACE}.{ACTION} jobs ...", flush=True)
    t = time.perf_counter()
    with schema_context(SCHEMA):
        batch = batch_create(
            name=f"bench {total} x {ACTION}",
            jobs=[JobSpec(marketplace=MARKETPLACE, action=ACTION) for _ in range(total)],
        )
    create_s = time.perf_counter() - t

    poller = Poller(
        url,
        f"SELECT status, completed_jobs + failed_jobs + cancelled_jobs + skipped_jobs "
        f'FROM "{SCHEMA}"."{Batch._meta.db_table}" WHERE id = %s',
        (batch.pk,),
    )
    before = db_stats()
    cluster = harness.Cluster(env, harness.RESULTS_DIR / f"{NAME}.engine.qcluster.log.tmp")
    meter = Meter(url, dbname, units_per_result=STEPS_PER_JOB)
    cluster_start = timezone.now()
    usage = drain(
        cluster,
        poller,
        meter,
        total,
        label="engine jobs done",
        timeout=args.timeout,
        finished=lambda done: bool(poller.last) and poller.last[0] in BATCH_TERMINAL,
    )
    time.sleep(0.5)
    delta = stats_delta(before, db_stats(), polls=poller.polls)

    with schema_context(SCHEMA):
        batch.refresh_from_db()
        runs = JobRun.objects.filter(job__batch_id=batch.pk)
        agg = runs.aggregate(
            n=Count("id"),
            first_start=Min("started_at"),
            first_end=Min("finished_at"),
            last_end=Max("finished_at"),
        )
        per_worker = sorted(
            (row["n"] for row in runs.values("worker").annotate(n=Count("id")).order_by()),
            reverse=True,
        )
        committed = MarketplaceTask.objects.filter(
            job__batch_id=batch.pk, status=TaskStatus.COMPLETED
        ).count()
    if batch.status != BatchStatus.COMPLETED:
        raise harness.BenchError(
            f"the batch ended {batch.status}: {batch.completed_jobs} completed, "
            f"{batch.failed_jobs} failed, {batch.cancelled_jobs} cancelled of {total}; "
            f"log {cluster.log_path}:\n{cluster.log_tail()}"
        )
    drains = list(
        Task.objects.filter(
            func="orchestration.tasks.drain", stopped__gte=cluster_start
        ).values_list("result", flat=True)
    )
    wall_s = harness.seconds_between(cluster_start, batch.completed_at)
    from_first_run_s = harness.seconds_between(agg["first_start"], batch.completed_at)
    runs_window_s = harness.seconds_between(agg["first_start"], agg["last_end"])
    steady_s = harness.seconds_between(agg["first_end"], agg["last_end"])
    return {
        "jobs": total,
        "steps": steps,
        "steps_committed": committed,
        "runs": agg["n"],
        "batch_status": batch.status,
        "batch_create_s": round(create_s, 3),
        "first_run_s": harness.seconds_between(cluster_start, agg["first_start"]),
        "first_result_s": harness.seconds_between(cluster_start, agg["first_end"]),
        "wall_s": wall_s,
        "from_first_run_s": from_first_run_s,
        "runs_window_s": runs_window_s,
        "steady_s": steady_s,
        "steps_per_s_wall": harness.rate(steps, wall_s),
        "jobs_per_s_wall": harness.rate(total, wall_s),
        "steps_per_s_from_first_run": harness.rate(steps, from_first_run_s),
        "steps_per_s_runs_window": harness.rate(steps, runs_window_s),
        "jobs_per_s_runs_window": harness.rate(total, runs_window_s),
        "steps_per_s_steady": harness.rate((total - 1) * STEPS_PER_JOB, steady_s),
        "jobs_per_s_steady": harness.rate(total - 1, steady_s),
        "jobs_per_worker": per_worker,
        "drain_tasks": len(drains),
        "jobs_per_drain": [d.get("jobs") for d in drains if isinstance(d, dict)],
        "cluster_stop_s": round(cluster.stop_seconds or 0, 2),
        "cluster_killed": cluster.killed,
        "db_counters_per_step": {k: round(v / steps, 2) for k, v in delta.items()},
        **usage.per_unit(steps, "step"),
    }


def run_rate_curve(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """The no-op resource limited to 60 starts/min, a batch of more jobs than fit, a real
    cluster for ``--rate-curve-seconds``: starts per second (``JobRun.started_at``). Spread
    starts show about one a second; the old rule started a minute's worth at once."""
    import itertools
    import math
    from datetime import timedelta

    from django.db.models import F, Min
    from django_tenants.utils import schema_context

    from orchestration.models import JobRun
    from orchestration.services import JobSpec, batch_create, resource_set_limits

    seconds = args.rate_curve_seconds
    jobs = math.ceil(seconds * RATE_PER_MINUTE / 60) + 20
    print(f"  rate curve: {jobs} jobs on a {RATE_PER_MINUTE}/min resource for {seconds}s ...")
    with schema_context(SCHEMA):
        # The runs of the earlier rounds (same resource) would fill the 60-s window: age
        # them (throw-away data), so the curve starts from an empty window.
        JobRun.objects.filter(resource_key="noop").update(
            started_at=F("started_at") - timedelta(minutes=5)
        )
        resource_set_limits(key="noop", concurrency=64, rate_per_minute=RATE_PER_MINUTE)
        batch = batch_create(
            name="rate curve",
            jobs=[JobSpec(marketplace=MARKETPLACE, action=ACTION) for _ in range(jobs)],
        )
    cluster = harness.Cluster(env, harness.RESULTS_DIR / f"{NAME}.rate.qcluster.log.tmp")
    cluster.start()
    try:
        # Start-up first (liveness bound), then `seconds` from the first start.
        harness.wait_for_count(
            lambda: int(_rate_runs(batch.pk) > 0), 1, label="rate curve: first start",
            cluster=cluster, timeout=args.timeout,
        )  # fmt: skip
        deadline = time.monotonic() + seconds + 1
        while time.monotonic() < deadline:
            if not cluster.running():
                raise harness.BenchError(f"qcluster exited: {cluster.log_tail()}")
            time.sleep(1)
    finally:
        cluster.stop()
    with schema_context(SCHEMA):
        runs = JobRun.objects.filter(job__batch_id=batch.pk)
        first = runs.aggregate(t=Min("started_at"))["t"]
        starts = sorted(
            (t - first).total_seconds() for t in runs.values_list("started_at", flat=True)
        )
        resource_set_limits(key="noop", concurrency=64, rate_per_minute=None)
    starts = [t for t in starts if t < seconds]
    per_second = [0] * seconds
    for t in starts:
        per_second[int(t)] += 1
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(starts)]
    busiest = max(
        (sum(1 for t in starts if w <= t < w + 10) for w in range(max(seconds - 10, 1))),
        default=0,
    )
    return {
        "rate_per_minute": RATE_PER_MINUTE,
        "seconds": seconds,
        "starts": len(starts),
        "starts_per_second": per_second,
        "start_offsets_s": [round(t, 3) for t in starts],
        "max_starts_in_1s": max(per_second, default=0),
        "max_starts_in_10s": busiest,
        "longest_gap_s": max(gaps, default=None),
        "median_gap_s": sorted(gaps)[len(gaps) // 2] if gaps else None,
        "target": "about one start per second (max 1 in any second, no idle stretch of ~54 s)",
        "basis": "JobRun.started_at of a batch of noopmkt.noop5 jobs, from the first start",
    }


def _rate_runs(batch_id: int) -> int:
    from django_tenants.utils import schema_context

    from orchestration.models import JobRun

    with schema_context(SCHEMA):
        return JobRun.objects.filter(job__batch_id=batch_id).count()
