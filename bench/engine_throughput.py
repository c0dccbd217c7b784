"""Engine throughput: committed engine steps/s against raw django-q2 no-op tasks/s.

One fresh database and one tenant (``bench``). Two runs, one after the other, each with
a real ``manage.py qcluster`` (same ``Q_CLUSTER`` settings, ``--workers`` workers):

1. raw django-q2: ``--tasks`` calls of ``async_task("bench.noop.noop")`` enqueued, then
   the cluster is started and timed until every one has a result row (``Task``);
2. engine: one batch of ``--jobs`` jobs of ``noopmkt.noop5`` (5 no-op steps each, from
   ``tests.engine_providers``), then the cluster is started and timed until the batch is
   ``completed``.

Windows (all from database timestamps, same clock):

- ``wall``: from starting the cluster process to the last result (includes the
  cluster's start-up, a few seconds of Python imports, the same for both runs);
- ``steady``: first result → last result, rate = (count - 1) / window, for both runs
  (engine: ``JobRun.finished_at``; q2: ``Task.stopped``; q2's ``Task.started`` is the
  enqueue time, so it cannot open a window). **The target ratio (engine steps/s ÷ q2
  tasks/s ≥ 3) is judged on this window**, which leaves start-up out of both;
- engine only: ``runs_window`` = first ``JobRun.started_at`` → last ``finished_at``, and
  ``from_first_run`` = first ``started_at`` → the batch's ``completed_at``.

Then a small in-process run (``run_available_jobs()`` under ``CaptureQueriesContext``)
counts the SQL statements per job and per step. Nothing here asserts on timings.

    .venv/bin/python -m bench.engine_throughput --jobs 1000 --tasks 1000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from collections import Counter
from typing import Any

from bench import harness

NAME = "engine_throughput"
SCHEMA = "bench"
# "noopmkt": no-op steps whose resource allows 64 at once (nothing external to protect).
MARKETPLACE, ACTION, STEPS_PER_JOB = "noopmkt", "noop5", 5
NOOP_FUNC = "bench.noop.noop"
TARGET_RATIO = 3.0
MAX_PROFILE_JOBS = 60  # ~100 statements per job; Django keeps only the last 9000 captured
STATS_COLUMNS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine_throughput",
        description="Engine steps/s vs raw django-q2 tasks/s on a fresh database.",
    )
    parser.add_argument("--jobs", type=int, default=400, help="engine jobs, 5 no-op steps each")
    parser.add_argument("--tasks", type=int, default=1000, help="raw django-q2 no-op tasks")
    parser.add_argument("--workers", type=int, default=2, help="qcluster workers (Q_WORKERS)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternate raw q2 and engine runs this many times; the ratio is of the medians",
    )
    parser.add_argument(
        "--profile-jobs",
        type=int,
        default=40,
        help=f"jobs per action in the in-process query profile (0 = skip, max {MAX_PROFILE_JOBS})",
    )
    parser.add_argument(
        "--cprofile", action="store_true", help="also print a cProfile of the in-process run"
    )
    parser.add_argument(
        "--timeout", type=float, default=240, help="liveness bound per cluster run (seconds)"
    )
    parser.add_argument(
        "--keep-db", action="store_true", help="leave the bench database in place (debugging)"
    )
    parser.add_argument(
        "--no-procrastinate",
        dest="procrastinate",
        action="store_false",
        help="skip the procrastinate peer",
    )
    parser.add_argument(
        "--compare",
        default="COMMIT_DELAY_US=1000",
        help=(
            "KEY=V1,V2: in every round, also run the engine with ORCHESTRATION_KEY=V for each "
            "value (e.g. COMMIT_DELAY_US=0,1000), to state what a setting buys"
        ),
    )
    parser.add_argument(
        "--rate-curve-seconds",
        type=int,
        default=70,
        help="run a 60/min resource this long with a real cluster and record its starts (0 = skip)",
    )
    parser.add_argument(
        "--pgbench-seconds",
        type=int,
        default=10,
        help="pgbench single-row-update ceiling per round (0 = skip)",
    )
    return parser.parse_args(argv)


def small_defaults(argv: list[str] | None) -> list[str]:
    """Under ``CI=true`` the sizes default small (explicit options still win)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        argv = ["--jobs", "100", "--tasks", "200", "--rounds", "1", "--pgbench-seconds", "3", "--rate-curve-seconds", "25",
                "--profile-jobs", "10", "--compare", "", *argv]  # fmt: skip
    return argv


def command_line(args: argparse.Namespace) -> str:
    return (
        f".venv/bin/python -m bench.{NAME} --jobs {args.jobs} --tasks {args.tasks} "
        f"--workers {args.workers} --rounds {args.rounds} --compare '{args.compare}' "
        f"--pgbench-seconds {args.pgbench_seconds} --rate-curve-seconds {args.rate_curve_seconds}"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(small_defaults(argv))
    harness.install_sigterm_handler()
    started = time.perf_counter()
    machine = harness.machine_info()
    server, embedded = harness.server_url()
    print(
        f"[{NAME}] engine: {args.jobs} jobs x {STEPS_PER_JOB} no-op steps; raw django-q2: "
        f"{args.tasks} no-op tasks; {args.workers} workers"
    )
    db = harness.BenchDatabase(server)
    with db:
        db.keep = args.keep_db
        harness.announce_database(db, server, embedded)
        env = harness.cluster_env(db.url, workers=args.workers)
        setup = provision(env)
        setup.update(setup_procrastinate(env, db.url))
        harness.setup_django(env)
        import tests.engine_providers  # noqa: F401  (registers testmkt in this process too)

        # Rounds alternate the two runs, so a machine that speeds up or slows down during the
        # benchmark (shared hosts do) weighs on both sides alike; medians resist one bad run.
        q2_rounds, pro_rounds, engine_rounds, ceilings = [], [], [], []
        variant_rounds: dict[str, list[dict[str, Any]]] = {}
        for number in range(1, args.rounds + 1):
            print(f"  round {number}/{args.rounds}")
            q2_rounds.append(run_raw_q2(args, env, db.url, db.name, group=f"round{number}"))
            if args.procrastinate:
                pro_rounds.append(
                    run_procrastinate(args, env, db.url, db.name, queue=f"round{number}")
                )
            engine_rounds.append(run_engine(args, env, db.url, db.name))
            for label, variant_env in variants(args, env):
                print(f"  engine variant {label} ...", flush=True)
                run = run_engine(args, variant_env, db.url, db.name)
                variant_rounds.setdefault(label, []).append(run)
            if args.pgbench_seconds > 0:
                print(f"  pgbench: single-row updates, {args.workers} clients ...", flush=True)
                ceilings.append(
                    harness.pgbench_single_row_updates(
                        db.url, clients=args.workers, seconds=args.pgbench_seconds
                    )
                )
        raw_q2 = _median_run(q2_rounds, "tasks_per_s_steady")
        engine = _median_run(engine_rounds, "steps_per_s_steady")
        raw_q2["rounds_tasks_per_s_steady"] = [r["tasks_per_s_steady"] for r in q2_rounds]
        engine["rounds_steps_per_s_steady"] = [r["steps_per_s_steady"] for r in engine_rounds]
        procrastinate = None
        if pro_rounds:
            procrastinate = _median_run(pro_rounds, "tasks_per_s_steady")
            procrastinate["rounds_tasks_per_s_steady"] = [
                r["tasks_per_s_steady"] for r in pro_rounds
            ]
        ceiling = ceiling_summary(ceilings, db.url, args)
        profile = profile_in_process(args.profile_jobs, cprofile=args.cprofile)
        rate_curve = run_rate_curve(args, env) if args.rate_curve_seconds > 0 else None
        settings_used = describe_settings(args)
        database = describe_database(embedded, db.name)

    result = assemble(args, machine, database, setup, raw_q2, engine, profile, settings_used)
    add_peers(result, procrastinate, ceiling)
    result["rate_curve"] = rate_curve
    result["engine_variants"] = {
        label: {
            "steps_per_s_steady_rounds": [r["steps_per_s_steady"] for r in runs],
            "median": _median_run(runs, "steps_per_s_steady")["steps_per_s_steady"],
            "usage_per_step": _median_run(runs, "steps_per_s_steady").get("usage_per_step"),
        }
        for label, runs in variant_rounds.items()
    }
    result["duration_s"] = round(time.perf_counter() - started, 1)
    result["machine"]["loadavg_at_end"] = harness.loadavg()
    path = harness.write_result(NAME, result)
    print_summary(result, path)
    return result


def variants(args: argparse.Namespace, env: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    if not args.compare:
        return []
    key, _, values = args.compare.partition("=")
    key = key.strip().upper()
    return [
        (f"{key}={value.strip()}", dict(env, **{f"ORCHESTRATION_{key}": value.strip()}))
        for value in values.split(",")
        if value.strip()
    ]


def _median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose ``key`` is the median (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda run: run[key] or 0.0)
    return dict(ordered[(len(ordered) - 1) // 2])


# --- setup --------------------------------------------------------------------------------


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


# --- database counters (approximate: cover every session of the database) -------------------


def db_stats() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        # PostgreSQL 15+: make this session's own pending counters visible (older: they lag)
        with contextlib.suppress(Exception):
            cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute(
            f"SELECT {', '.join(STATS_COLUMNS)} FROM pg_stat_database WHERE datname = current_database()"
        )
        row = cursor.fetchone()
    return dict(zip(STATS_COLUMNS, (int(v) for v in row), strict=True))


def stats_delta(before: dict[str, int], after: dict[str, int], *, polls: int) -> dict[str, int]:
    delta = {k: after[k] - before[k] for k in STATS_COLUMNS}
    delta["xact_commit"] -= polls + 2  # the harness's own poll and stats statements
    return delta


class Poller:
    """A separate plain connection that polls one count (one statement per poll)."""

    def __init__(self, url: str, sql: str, params: tuple):
        self.conn = harness.connect(url)
        self.sql, self.params = sql, params
        self.polls = 0
        self.last: tuple = ()

    def __call__(self) -> int:
        self.polls += 1
        self.last = self.conn.execute(self.sql, self.params).fetchone() or ()
        return int(self.last[-1] or 0)

    def close(self) -> None:
        self.conn.close()  # its session's counters are flushed when it ends


_seconds = harness.seconds_between


# --- run 1: raw django-q2 ------------------------------------------------------------------


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
    cluster.start()
    try:
        harness.wait_for_count(
            meter.wrap(poller, cluster),
            total,
            label="raw q2 tasks done",
            cluster=cluster,
            timeout=args.timeout,
        )
    finally:
        usage = meter.finish(cluster)
        cluster.stop()
        poller.close()
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
    wall_s = _seconds(cluster_start, agg["last"])
    steady_s = _seconds(agg["first"], agg["last"])
    return {
        "tasks": total,
        "results": agg["n"],
        "failed": agg["failed"],
        "enqueue_s": round(enqueue_s, 3),
        "first_result_s": _seconds(cluster_start, agg["first"]),
        "wall_s": wall_s,
        "steady_s": steady_s,
        "tasks_per_s_wall": harness.rate(total, wall_s),
        "tasks_per_s_steady": harness.rate(total - 1, steady_s),
        "cluster_stop_s": round(cluster.stop_seconds or 0, 2),
        "cluster_killed": cluster.killed,
        "db_counters_per_task": {k: round(v / total, 2) for k, v in delta.items()},
        **usage.per_unit(total, "task"),
    }


# --- run 1b: procrastinate (a peer queue on the same server) ---------------------------------

PROCRASTINATE_APP = "bench.procrastinate_app.app"


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
    from bench.procrastinate_app import app, noop

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
    group.start()
    try:
        harness.wait_for_count(
            meter.wrap(poller, group),
            total,
            label="procrastinate jobs done",
            cluster=group,
            timeout=args.timeout,
        )
    finally:
        usage = meter.finish(group)
        group.stop()
        poller.close()
    with harness.connect(url) as conn:
        first, last, n = conn.execute(
            "SELECT min(e.at), max(e.at), count(*) FROM procrastinate_events e "
            "JOIN procrastinate_jobs j ON j.id = e.job_id "
            "WHERE j.queue_name = %s AND e.type = 'succeeded'",
            (queue,),
        ).fetchone()
    steady_s = _seconds(first, last)
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


# --- where the time goes: CPU (workers, backends) and WAL flushes during a run ----------------


class Usage:
    def __init__(self, worker_cpu_s, backend_cpu_s, wal, commits, seconds, units):
        self.worker_cpu_s, self.backend_cpu_s = worker_cpu_s, backend_cpu_s
        self.wal, self.commits, self.seconds = wal, commits, seconds
        self.units = units  # results counted inside the measured window

    def per_unit(self, count: int, unit: str) -> dict[str, Any]:
        count = self.units or count

        def per(value):
            return None if value is None else round(value / count, 2)

        return {
            f"usage_per_{unit}": {
                "worker_cpu_us": per(self.worker_cpu_s * 1e6),
                "backend_cpu_us": per(
                    None if self.backend_cpu_s is None else self.backend_cpu_s * 1e6
                ),
                "commits": per(self.commits),
                "wal_syncs_server_wide": per(self.wal.get("wal_sync")),
                "wal_records_server_wide": per(self.wal.get("wal_records")),
                "wal_bytes_server_wide": per(self.wal.get("wal_bytes")),
            },
            "usage_window": {
                "basis": (
                    "from the first poll that saw a result to the last poll (start-up "
                    f"left out), per {unit} completed in that window"
                ),
                f"{unit}s": self.units,
                "seconds": round(self.seconds, 3),
                "worker_cpu_s": round(self.worker_cpu_s, 3),
                "backend_cpu_s": self.backend_cpu_s,
                "commits": self.commits,
                **self.wal,
            },
        }


class Meter:
    """Where a run's time goes, in its steady part: CPU of the worker processes (process
    trees, psutil), CPU of this database's backends (sampled at every poll), commits of this
    database (``pg_stat_database``) and WAL records/flushes (``pg_stat_wal``), from the
    first poll that sees a result to the last poll. WAL counters are server-wide: other
    databases on a shared server add to them (recorded as measured, named so).

    ``units_per_result`` converts the polled count (jobs) into the unit reported (steps).
    """

    def __init__(self, url: str, dbname: str, units_per_result: int = 1):
        self.conn = harness.connect(url)
        self.backends = harness.BackendCpu(url, dbname)
        self.dbname = dbname
        self.units_per_result = units_per_result
        self.base: dict[str, Any] | None = None
        self.done = 0
        self.polls = 0

    def _commits(self) -> int:
        with contextlib.suppress(Exception):
            self.conn.execute("SELECT pg_stat_force_next_flush()")
        return int(
            self.conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (self.dbname,)
            ).fetchone()[0]
        )

    def _snapshot(self, group) -> dict[str, Any]:
        self.backends.sample()
        worker = 0.0
        with contextlib.suppress(Exception):
            worker = harness.tree_cpu_seconds(_pids(group))
        return {
            "t": time.perf_counter(),
            "worker": worker,
            "backend": self.backends.total(),
            "wal": harness.wal_stats(self.conn),
            "commits": self._commits(),
            "done": self.done,
            "polls": self.polls,
        }

    def wrap(self, poll, group):
        def polled() -> int:
            self.polls += 1
            self.done = poll()
            if self.base is None and self.done > 0:
                self.base = self._snapshot(group)
            elif self.base is not None:
                self.backends.sample()
            return self.done

        return polled

    def finish(self, group) -> Usage:
        try:
            if self.base is None:
                return Usage(0.0, None, {}, 0, 0.0, 0)
            end = self._snapshot(group)
            base = self.base
            backend = (
                round(end["backend"] - base["backend"], 3)
                if end["backend"] is not None and base["backend"] is not None
                else None
            )
            polls = end["polls"] - base["polls"]
            # each poll: one poller statement + one backend sample (autocommit each);
            # each snapshot: about four of its own
            commits = end["commits"] - base["commits"] - 2 * polls - 4
            wal = {k: end["wal"][k] - base["wal"][k] for k in harness.WAL_COLUMNS}
            return Usage(
                end["worker"] - base["worker"],
                backend,
                wal,
                commits,
                end["t"] - base["t"],
                (end["done"] - base["done"]) * self.units_per_result,
            )
        finally:
            self.backends.close()
            self.conn.close()


def _pids(group) -> list[int]:
    if isinstance(group, harness.ProcessGroup):
        return group.pids()
    return [group.proc.pid] if group.proc is not None else []


# --- run 2: the engine ------------------------------------------------------------------------


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
    cluster.start()
    try:
        harness.wait_for_count(
            meter.wrap(poller, cluster),
            total,
            label="engine jobs done",
            cluster=cluster,
            timeout=args.timeout,
            finished=lambda done: bool(poller.last) and poller.last[0] in BATCH_TERMINAL,
        )
    finally:
        usage = meter.finish(cluster)
        cluster.stop()
        poller.close()
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
    wall_s = _seconds(cluster_start, batch.completed_at)
    from_first_run_s = _seconds(agg["first_start"], batch.completed_at)
    runs_window_s = _seconds(agg["first_start"], agg["last_end"])
    steady_s = _seconds(agg["first_end"], agg["last_end"])
    return {
        "jobs": total,
        "steps": steps,
        "steps_committed": committed,
        "runs": agg["n"],
        "batch_status": batch.status,
        "batch_create_s": round(create_s, 3),
        "first_run_s": _seconds(cluster_start, agg["first_start"]),
        "first_result_s": _seconds(cluster_start, agg["first_end"]),
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


# --- in-process query profile ---------------------------------------------------------------------

_TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+"?([\w.]+)"?', re.IGNORECASE)


def categorize(sql: str) -> str:
    text = sql.strip()
    verb = text.split(None, 1)[0].upper() if text else "?"
    if verb in ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK"):
        return f"{verb} (savepoint)" if "SAVEPOINT" in text.upper() else verb
    if verb == "SET":
        return "SET search_path" if "search_path" in text.lower() else "SET"
    match = _TABLE.search(text)
    table = match.group(1).removeprefix("public.") if match else "?"
    lock = " FOR UPDATE" if "FOR UPDATE" in text.upper() else ""
    return f"{verb} {table}{lock}"


def _profile_action(action: str, steps: int, jobs: int, *, cprofile: bool) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django_tenants.utils import schema_context

    from orchestration.services import JobSpec, batch_create, run_available_jobs
    from orchestration.services.executor import StepExecutor

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


# --- a rate-limited resource drains evenly (claims.py) ---------------------------------------

RATE_PER_MINUTE = 60


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


# --- peers and the server's ceiling ----------------------------------------------------------


def ceiling_summary(
    ceilings: list[dict[str, Any]], url: str, args: argparse.Namespace
) -> dict[str, Any] | None:
    """Median durable pgbench tps of the rounds, plus one non-durable run for reference."""
    runs = [c for c in ceilings if c.get("tps")]
    if not runs:
        return {"error": ceilings[0].get("error")} if ceilings else None
    median = _median_run(runs, "tps")
    nondurable = harness.pgbench_single_row_updates(
        url,
        clients=args.workers,
        seconds=max(3, args.pgbench_seconds // 2),
        options="-c synchronous_commit=off",
    )
    return {
        "durable": median,
        "rounds_tps": [c["tps"] for c in runs],
        "synchronous_commit_off": nondurable,
        "basis": (
            "pgbench -c <workers>: one UPDATE of one random row of 1,000 per transaction, "
            "durable (server's synchronous_commit), on the same server and database, once "
            "per round right after the engine run; the figure is the median round"
        ),
    }


def add_peers(result: dict[str, Any], procrastinate, ceiling) -> None:
    summary = result["summary"]
    engine = summary["engine_steps_per_s"]
    peers = {"django-q2": summary["q2_tasks_per_s"]}
    if procrastinate:
        peers["procrastinate"] = procrastinate["tasks_per_s_steady"]
        summary["procrastinate_tasks_per_s"] = procrastinate["tasks_per_s_steady"]
        summary["rounds_procrastinate_tasks_per_s"] = procrastinate["rounds_tasks_per_s_steady"]
    best_name, best = max(peers.items(), key=lambda kv: kv[1] or 0.0)
    summary["best_peer"] = best_name
    summary["ratio_vs_best_peer"] = round(engine / best, 2) if engine and best else None
    summary["target_met"] = bool(
        summary["ratio_vs_best_peer"] and summary["ratio_vs_best_peer"] >= TARGET_RATIO
    )
    tps = (ceiling or {}).get("durable", {}).get("tps")
    summary["pgbench_ceiling_tps"] = tps
    if tps:
        summary["fraction_of_ceiling"] = {
            "engine_steps": round(engine / tps, 2) if engine else None,
            **{name: round(rate / tps, 2) if rate else None for name, rate in peers.items()},
        }
    summary["durable_commits"] = bool(result["settings"]["orchestration"]["SYNCHRONOUS_COMMIT"])
    result["procrastinate"] = procrastinate
    result["pgbench_ceiling"] = ceiling
    result["versions"].update(harness.package_versions("procrastinate"))


# --- report -------------------------------------------------------------------------------------------


def describe_settings(args: argparse.Namespace) -> dict[str, Any]:
    from django.conf import settings

    from orchestration import conf

    q = settings.Q_CLUSTER
    keys = ("workers", "poll", "queue_limit", "bulk", "save_limit", "timeout", "retry", "recycle")
    return {
        "workers": args.workers,
        "jobs": args.jobs,
        "steps_per_job": STEPS_PER_JOB,
        "job_kind": f"{MARKETPLACE}.{ACTION}",
        "raw_q2_tasks": args.tasks,
        "q_cluster": {k: q.get(k) for k in keys},
        "q2_broker": "redis" if "redis" in q else "orm",
        "conn_max_age": settings.DATABASES["default"].get("CONN_MAX_AGE"),
        "orchestration": {k: conf.get(k) for k in conf.DEFAULTS},
        "drain_slots": conf.drain_slots(),
        "poll_interval_s": 0.2,
    }


describe_database = harness.describe_database


def assemble(args, machine, database, setup, raw_q2, engine, profile, settings_used) -> dict:
    steps_steady = engine["steps_per_s_steady"]
    q2_steady = raw_q2["tasks_per_s_steady"]
    ratio = round(steps_steady / q2_steady, 2) if steps_steady and q2_steady else None
    ratio_wall = (
        round(engine["steps_per_s_wall"] / raw_q2["tasks_per_s_wall"], 2)
        if engine["steps_per_s_wall"] and raw_q2["tasks_per_s_wall"]
        else None
    )
    return {
        "benchmark": NAME,
        "timestamp": harness.now_iso(),
        "command": command_line(args),
        "summary": {
            "engine_steps_per_s": steps_steady,
            "engine_jobs_per_s": engine["jobs_per_s_steady"],
            "q2_tasks_per_s": q2_steady,
            "ratio": ratio,
            "target_ratio": TARGET_RATIO,
            "target_met": bool(ratio is not None and ratio >= TARGET_RATIO),
            "basis": (
                "steady window for both: first result -> last result, rate = (count - 1) / "
                "window (engine: JobRun.finished_at; q2: Task.stopped); median of "
                f"{args.rounds} alternating rounds on each side"
            ),
            "rounds_q2_tasks_per_s": raw_q2.get("rounds_tasks_per_s_steady"),
            "rounds_engine_steps_per_s": engine.get("rounds_steps_per_s_steady"),
            "engine_steps_per_s_runs_window": engine["steps_per_s_runs_window"],
            "runs_window_basis": "engine: N*5 / (min JobRun.started_at -> max finished_at)",
            "engine_steps_per_s_wall": engine["steps_per_s_wall"],
            "engine_jobs_per_s_wall": engine["jobs_per_s_wall"],
            "q2_tasks_per_s_wall": raw_q2["tasks_per_s_wall"],
            "ratio_wall": ratio_wall,
            "wall_basis": "from starting the qcluster process to the last result",
        },
        "machine": machine,
        "git": harness.git_state(),
        "database": database,
        "versions": harness.package_versions("django", "django-q2", "django-tenants", "psycopg"),
        "settings": settings_used,
        "setup": setup,
        "raw_q2": raw_q2,
        "engine": engine,
        "profile_in_process": profile,
        "notes": [
            "the raw q2 run and the engine run are sequential, each with its own cluster",
            "db_counters_*: pg_stat_database deltas over the cluster run (whole database, "
            "minus the harness's own statements): approximate",
            "not a test: nothing asserts on these figures",
        ],
    }


def print_summary(result: dict[str, Any], path) -> None:
    s, e, q = result["summary"], result["engine"], result["raw_q2"]
    lines = [
        "",
        f"== {NAME} ({result['settings']['workers']} workers, "
        f"{result['machine']['cpu_count']} CPUs, PostgreSQL {result['database']['server_version']})",
        f"  raw django-q2 : {q['tasks']} tasks   first->last result {q['steady_s']}s -> {q['tasks_per_s_steady']} tasks/s"
        f"   (wall from cluster start {q['wall_s']}s -> {q['tasks_per_s_wall']} tasks/s)",
        f"  engine        : {e['jobs']} jobs = {e['steps']} steps   first->last result {e['steady_s']}s -> "
        f"{e['steps_per_s_steady']} steps/s, {e['jobs_per_s_steady']} jobs/s",
        f"                  wall from cluster start {e['wall_s']}s -> {e['steps_per_s_wall']} steps/s, "
        f"{e['jobs_per_s_wall']} jobs/s",
        f"                  first run started {e['first_run_s']}s after cluster start; "
        f"started->finished window {e['runs_window_s']}s -> {e['steps_per_s_runs_window']} steps/s",
        f"                  jobs per worker {e['jobs_per_worker']}, {e['drain_tasks']} drain tasks",
        f"  rounds (steady): q2 {s['rounds_q2_tasks_per_s']} tasks/s, engine "
        f"{s['rounds_engine_steps_per_s']} steps/s; figures above are the medians",
        f"  ratio steps/s / q2 tasks/s: {s['ratio']} (steady), {s['ratio_wall']} (wall)",
    ]
    if result.get("procrastinate"):
        pro = result["procrastinate"]
        lines.append(
            f"  procrastinate : {pro['tasks']} jobs   first->last result {pro['steady_s']}s -> "
            f"{pro['tasks_per_s_steady']} jobs/s (rounds {pro['rounds_tasks_per_s_steady']})"
        )
    lines.append(
        f"  durable commits: {s.get('durable_commits')}; best peer {s.get('best_peer')}: "
        f"ratio {s.get('ratio_vs_best_peer')}, target {s['target_ratio']}: "
        f"{'met' if s['target_met'] else 'NOT met'}"
    )
    if s.get("pgbench_ceiling_tps"):
        lines.append(
            f"  pgbench single-row-update ceiling: {s['pgbench_ceiling_tps']:.0f} tps; "
            f"fractions {s['fraction_of_ceiling']}"
        )
    for label, variant in (result.get("engine_variants") or {}).items():
        lines.append(
            f"  engine with {label}: {variant['steps_per_s_steady_rounds']} steps/s "
            f"(median {variant['median']}); per step {variant['usage_per_step']}"
        )
    for label, key, unit in (("q2", "raw_q2", "task"), ("procrastinate", "procrastinate", "task"),
                             ("engine", "engine", "step")):  # fmt: skip
        usage = (result.get(key) or {}).get(f"usage_per_{unit}")
        if usage:
            lines.append(f"  per {unit} ({label}): {usage}")
    profile = result.get("profile_in_process")
    if profile:
        lines.append(
            f"  in-process: {profile['queries_per_step']} queries/step + "
            f"{profile['queries_per_job_fixed']} per job; "
            f"{profile['transactions_per_step']} transactions/step + "
            f"{profile['transactions_per_job_fixed']} per job; "
            f"{profile['five_step_jobs']['steps_per_s']} steps/s in one process "
            f"(DB time {profile['five_step_jobs']['db_time_share']:.0%}, "
            f"process CPU {profile['five_step_jobs']['process_cpu_share']:.0%})"
        )
    git = result.get("git") or {}
    if git.get("commit"):
        dirty = git.get("uncommitted_changes") or []
        lines.append(
            f"  measured: commit {git['commit'][:10]}"
            + (f" + {len(dirty)} uncommitted files outside bench/" if dirty else "")
        )
    lines += [f"  written to {path}", f"  rerun: {result['command']}"]
    print("\n".join(lines))


if __name__ == "__main__":
    try:
        main()
    except harness.BenchError as exc:
        print(f"\n[{NAME}] failed: {exc}", file=sys.stderr)
        sys.exit(1)
