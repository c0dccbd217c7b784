"""The peers: raw django-q2 no-op tasks and procrastinate no-op jobs, each under real workers."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from bench import harness
from bench.engine_throughput.constants import NAME, NOOP_FUNC, PROCRASTINATE_APP
from bench.engine_throughput.meter import Meter, Poller, db_stats, drain, stats_delta


def run_raw_q2(
    args: argparse.Namespace, env: dict[str, str], url: str, dbname: str, *, group: str = "raw"
) -> dict[str, Any]:
    from django.db.models import Count, Max, Min, Q
    from django.utils import timezone
    from django_q.models import Task
    from django_q.tasks import async_task

    total = args.tasks
    print(f"  raw django-q2: enqueueing {total} no-op tasks ...", flush=True)
    t = time.perf_counter()
    for _ in range(total):
        async_task(NOOP_FUNC, group=group)
    enqueue_s = time.perf_counter() - t

    poller = Poller(
        url,
        f'SELECT count(*) FROM public."{Task._meta.db_table}" WHERE func = %s AND "group" = %s',
        (NOOP_FUNC, group),
    )
    before = db_stats()
    cluster = harness.Cluster(env, harness.RESULTS_DIR / f"{NAME}.q2.qcluster.log.tmp")
    meter = Meter(url, dbname)
    cluster_start = timezone.now()
    usage = drain(
        cluster,
        poller,
        meter,
        total,
        label="raw q2 tasks done",
        timeout=args.timeout,
    )
    time.sleep(0.5)  # let the cluster's sessions finish ending (they flush their counters)
    delta = stats_delta(before, db_stats(), polls=poller.polls)

    # Task.started is the enqueue time (django-q2 sets it in async_task), so the q2 windows
    # are measured on completions (Task.stopped).
    agg = Task.objects.filter(func=NOOP_FUNC, group=group).aggregate(
        n=Count("id"),
        failed=Count("id", filter=Q(success=False)),
        first=Min("stopped"),
        last=Max("stopped"),
    )
    wall_s = harness.seconds_between(cluster_start, agg["last"])
    steady_s = harness.seconds_between(agg["first"], agg["last"])
    return {
        "tasks": total,
        "results": agg["n"],
        "failed": agg["failed"],
        "enqueue_s": round(enqueue_s, 3),
        "first_result_s": harness.seconds_between(cluster_start, agg["first"]),
        "wall_s": wall_s,
        "steady_s": steady_s,
        "tasks_per_s_wall": harness.rate(total, wall_s),
        "tasks_per_s_steady": harness.rate(total - 1, steady_s),
        "cluster_stop_s": round(cluster.stop_seconds or 0, 2),
        "cluster_killed": cluster.killed,
        "db_counters_per_task": {k: round(v / total, 2) for k, v in delta.items()},
        **usage.per_unit(total, "task"),
    }


def libpq_url(url: str) -> str:
    """A libpq conninfo string for ``url`` (TCP or the embedded server's socket form)."""
    import environ
    from psycopg.conninfo import make_conninfo

    cfg = environ.Env.db_url_config(url)
    params = {
        "dbname": cfg["NAME"],
        "user": cfg.get("USER") or None,
        "password": cfg.get("PASSWORD") or None,
        "host": cfg.get("HOST") or None,
        "port": str(cfg["PORT"]) if cfg.get("PORT") else None,
    }
    return make_conninfo(**{k: v for k, v in params.items() if v is not None})


def setup_procrastinate(env: dict[str, str], url: str) -> dict[str, Any]:
    """Apply procrastinate's schema (its own tables in ``public``) to the bench database."""
    _out, seconds = _run_checked(
        [sys.executable, "-m", "procrastinate", "--app", PROCRASTINATE_APP, "schema", "--apply"],
        env=procrastinate_env(env, url),
    )
    return {"schema_apply_s": round(seconds, 2)}


def procrastinate_env(env: dict[str, str], url: str) -> dict[str, str]:
    return dict(env, BENCH_PROCRASTINATE_DSN=libpq_url(url))


def _run_checked(argv: list[str], *, env: dict[str, str]) -> tuple[str, float]:
    import subprocess

    started = time.perf_counter()
    proc = subprocess.run(
        argv, cwd=harness.BASE_DIR, env=env, capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        raise harness.BenchError(f"{' '.join(argv[1:])} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr, time.perf_counter() - started


def run_procrastinate(
    args: argparse.Namespace, env: dict[str, str], url: str, dbname: str, *, queue: str
) -> dict[str, Any]:
    """``--tasks`` no-op jobs deferred in one batch, then ``--workers`` procrastinate worker
    processes (concurrency 1 each: one job at a time per process, like a q2 worker) are
    started and timed until every job has succeeded. Windows from its event table."""
    os.environ["BENCH_PROCRASTINATE_DSN"] = libpq_url(url)  # read when the app is imported
    from bench.engine_throughput.procrastinate_app import app, noop

    total = args.tasks
    print(f"  procrastinate: deferring {total} no-op jobs ...", flush=True)
    t = time.perf_counter()
    with app.open():
        noop.configure(queue=queue).batch_defer(*({} for _ in range(total)))
    enqueue_s = time.perf_counter() - t
    penv = procrastinate_env(env, url)
    members = [
        harness.Cluster(
            penv,
            harness.RESULTS_DIR / f"{NAME}.procrastinate{i}.log.tmp",
            argv=[
                sys.executable,
                "-m",
                "procrastinate",
                "--app",
                PROCRASTINATE_APP,
                "worker",
                "--name",
                f"bench{i}",
                "--concurrency",
                "1",
            ],
        )
        for i in range(args.workers)
    ]
    group = harness.ProcessGroup(members)
    poller = Poller(
        url,
        "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = %s AND status = 'succeeded'",
        (queue,),
    )
    meter = Meter(url, dbname)
    started_at = time.time()
    usage = drain(
        group,
        poller,
        meter,
        total,
        label="procrastinate jobs done",
        timeout=args.timeout,
    )
    with harness.connect(url) as conn:
        first, last, n = conn.execute(
            "SELECT min(e.at), max(e.at), count(*) FROM procrastinate_events e "
            "JOIN procrastinate_jobs j ON j.id = e.job_id "
            "WHERE j.queue_name = %s AND e.type = 'succeeded'",
            (queue,),
        ).fetchone()
    steady_s = harness.seconds_between(first, last)
    wall_s = round(last.timestamp() - started_at, 3) if last else None
    return {
        "tasks": total,
        "results": n,
        "enqueue_s": round(enqueue_s, 3),
        "wall_s": wall_s,
        "steady_s": steady_s,
        "tasks_per_s_wall": harness.rate(total, wall_s),
        "tasks_per_s_steady": harness.rate(total - 1, steady_s),
        "worker_processes": args.workers,
        "concurrency_per_process": 1,
        "cluster_stop_s": round(group.stop_seconds or 0, 2),
        **usage.per_unit(total, "task"),
    }
