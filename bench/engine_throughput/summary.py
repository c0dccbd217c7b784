"""The result: peers and ceilings beside the engine, the JSON document and the printed summary."""

from __future__ import annotations

import argparse
from typing import Any

from bench import harness
from bench.engine_throughput.cli import command_line
from bench.engine_throughput.constants import ACTION, MARKETPLACE, NAME, STEPS_PER_JOB, TARGET_RATIO


def ceiling_summary(
    ceilings: list[dict[str, Any]], url: str, args: argparse.Namespace
) -> dict[str, Any] | None:
    """Median durable pgbench tps of the rounds, plus one non-durable run for reference."""
    runs = [c for c in ceilings if c.get("tps")]
    if not runs:
        return {"error": ceilings[0].get("error")} if ceilings else None
    median = harness.median_run(runs, "tps")
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


def describe_settings(args: argparse.Namespace) -> dict[str, Any]:
    from django.conf import settings

    from orchestration import conf
    from orchestration.engine import slots

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
        "drain_slots": slots.drain_slots(),
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
    lines += harness.measured_lines(result, path)
    print("\n".join(lines))
