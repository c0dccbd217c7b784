"""Engine throughput: committed engine steps/s against raw django-q2 no-op tasks/s.

One fresh database and one tenant (``bench``). Two runs, one after the other, each with
a real ``manage.py qcluster`` (same ``Q_CLUSTER`` settings, ``--workers`` workers):

1. raw django-q2: ``--tasks`` calls of ``async_task("bench.engine_throughput.noop.noop")``
   enqueued, then the cluster is started and timed until every one has a result row (``Task``);
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

Modules: ``cli`` (options), ``peers`` (django-q2, procrastinate), ``engine`` (the engine's
runs, the rate curve), ``meter`` (CPU, counters, WAL while a run runs), ``profile`` (the
in-process profile), ``summary`` (the JSON and the printed summary).

    .venv/bin/python -m bench.engine_throughput --jobs 1000 --tasks 2500
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench import harness
from bench.engine_throughput.cli import parse_args, small_defaults
from bench.engine_throughput.constants import NAME, STEPS_PER_JOB
from bench.engine_throughput.engine import provision, run_engine, run_rate_curve
from bench.engine_throughput.peers import run_procrastinate, run_raw_q2, setup_procrastinate
from bench.engine_throughput.profile import profile_in_process
from bench.engine_throughput.summary import (
    add_peers,
    assemble,
    ceiling_summary,
    describe_database,
    describe_settings,
    print_summary,
)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(small_defaults(argv))
    harness.install_sigterm_handler()
    started = time.perf_counter()
    machine = harness.machine_info()
    print(
        f"[{NAME}] engine: {args.jobs} jobs x {STEPS_PER_JOB} no-op steps; raw django-q2: "
        f"{args.tasks} no-op tasks; {args.workers} workers"
    )
    with harness.throwaway_database(keep=args.keep_db) as (db, embedded):
        env = harness.cluster_env(db.url, workers=args.workers)
        setup = provision(env)
        setup.update(setup_procrastinate(env, db.url))
        harness.setup_django(env)
        import tests.engine_providers  # noqa: F401  (registers testmkt in this process too)

        # Rounds alternate the two runs, so a machine that speeds up or slows down during the
        # benchmark (shared hosts do) weighs on both sides alike; medians resist one bad run.
        q2_rounds, pro_rounds, engine_rounds, ceilings = [], [], [], []
        variant_rounds: dict[str, list[dict[str, Any]]] = {}
        vacuum_s = []
        for number in range(1, args.rounds + 1):
            print(f"  round {number}/{args.rounds}")
            # Each round starts from a vacuumed, analysed database, as with autovacuum on.
            vacuum_s.append(round(harness.vacuum_analyze(db.url), 2))
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
        raw_q2 = harness.median_run(q2_rounds, "tasks_per_s_steady")
        engine = harness.median_run(engine_rounds, "steps_per_s_steady")
        raw_q2["rounds_tasks_per_s_steady"] = [r["tasks_per_s_steady"] for r in q2_rounds]
        engine["rounds_steps_per_s_steady"] = [r["steps_per_s_steady"] for r in engine_rounds]
        procrastinate = None
        if pro_rounds:
            procrastinate = harness.median_run(pro_rounds, "tasks_per_s_steady")
            procrastinate["rounds_tasks_per_s_steady"] = [
                r["tasks_per_s_steady"] for r in pro_rounds
            ]
        ceiling = ceiling_summary(ceilings, db.url, args)
        profile = profile_in_process(args.profile_jobs, cprofile=args.cprofile)
        rate_curve = run_rate_curve(args, env) if args.rate_curve_seconds > 0 else None
        settings_used = describe_settings(args)
        database = describe_database(embedded, db.name, vacuum_analyze_s_per_round=vacuum_s)

    result = assemble(args, machine, database, setup, raw_q2, engine, profile, settings_used)
    add_peers(result, procrastinate, ceiling)
    result["rate_curve"] = rate_curve
    result["engine_variants"] = {
        label: {
            "steps_per_s_steady_rounds": [r["steps_per_s_steady"] for r in runs],
            "median": harness.median_run(runs, "steps_per_s_steady")["steps_per_s_steady"],
            "usage_per_step": harness.median_run(runs, "steps_per_s_steady").get("usage_per_step"),
        }
        for label, runs in variant_rounds.items()
    }
    path = harness.finish_result(NAME, result, started=started)
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
