"""The in-process profile: ``run_available_jobs()`` under ``CaptureQueriesContext``, statements by kind."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

from bench import harness
from bench.engine_throughput.constants import (
    ACTION,
    MARKETPLACE,
    MAX_PROFILE_JOBS,
    SCHEMA,
    STEPS_PER_JOB,
)
from bench.engine_throughput.meter import db_stats, stats_delta
from bench.harness import categorize


def _profile_action(action: str, steps: int, jobs: int, *, cprofile: bool) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django_tenants.utils import schema_context

    from orchestration.engine.executor import StepExecutor
    from orchestration.services import JobSpec, batch_create, run_available_jobs

    with schema_context(SCHEMA):
        batch_create(
            name=f"profile {action}",
            jobs=[JobSpec(marketplace=MARKETPLACE, action=action) for _ in range(jobs)],
        )
        executor = StepExecutor()
        profiler = None
        if cprofile:
            import cProfile

            profiler = cProfile.Profile()
        before = db_stats()
        try:
            with CaptureQueriesContext(connection) as ctx:
                if profiler:
                    profiler.enable()
                t, cpu = time.perf_counter(), time.process_time()
                ran = run_available_jobs(executor=executor)
                seconds = time.perf_counter() - t
                cpu = time.process_time() - cpu
                if profiler:
                    profiler.disable()
        finally:
            executor.close()
        delta = stats_delta(before, db_stats(), polls=0)
    queries = ctx.captured_queries
    db_s = sum(float(q["time"]) for q in queries)
    by_kind = Counter(categorize(q["sql"]) for q in queries)
    if profiler:
        import pstats

        print(f"\n  cProfile of the in-process run ({jobs} x {action}), top by own time:")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    return {
        "action": action,
        "jobs": ran,
        "steps": ran * steps,
        "seconds": round(seconds, 3),
        "steps_per_s": harness.rate(ran * steps, seconds),
        "queries": len(queries),
        "queries_per_job": round(len(queries) / max(ran, 1), 2),
        "ms_per_query": round(seconds / max(len(queries), 1) * 1000, 3),
        "db_ms_per_query": round(db_s / max(len(queries), 1) * 1000, 3),
        "db_time_share": round(db_s / seconds, 2) if seconds else None,
        "process_cpu_share": round(cpu / seconds, 2) if seconds else None,
        "transactions_per_job": round(delta["xact_commit"] / max(ran, 1), 2),
        "by_kind_per_job": {kind: round(n / max(ran, 1), 2) for kind, n in by_kind.most_common()},
    }


def profile_in_process(jobs: int, *, cprofile: bool = False) -> dict[str, Any] | None:
    """One process, one connection, no q2: statements per job (1 step) and per job (5 steps).

    The difference gives the per-step cost and the fixed per-job cost.
    """
    if jobs <= 0:
        return None
    jobs = min(jobs, MAX_PROFILE_JOBS)
    print(f"  in-process profile: {jobs} jobs of 1 step, {jobs} jobs of 5 steps ...", flush=True)
    one = _profile_action("one", 1, jobs, cprofile=False)
    five = _profile_action(ACTION, STEPS_PER_JOB, jobs, cprofile=cprofile)
    per_step = (five["queries_per_job"] - one["queries_per_job"]) / (STEPS_PER_JOB - 1)
    tx_per_step = (five["transactions_per_job"] - one["transactions_per_job"]) / (STEPS_PER_JOB - 1)
    step_kinds = {
        kind: round(
            (five["by_kind_per_job"].get(kind, 0) - one["by_kind_per_job"].get(kind, 0)) / 4, 2
        )
        for kind in five["by_kind_per_job"]
    }
    return {
        "note": (
            "single process, no django-q2, run_available_jobs() under CaptureQueriesContext; "
            "'one' = noopmkt.one (1 step, no I/O), 'noop5' = 5 no-op steps; per-step figures "
            "are (noop5 - one) / 4, per-job figures are what is left"
        ),
        "one_step_jobs": one,
        "five_step_jobs": five,
        "queries_per_step": round(per_step, 2),
        "queries_per_job_fixed": round(one["queries_per_job"] - per_step, 2),
        "transactions_per_step": round(tx_per_step, 2),
        "transactions_per_job_fixed": round(one["transactions_per_job"] - tx_per_step, 2),
        "per_step_by_kind": {k: v for k, v in step_kinds.items() if v},
    }
