"""The JSON document and the printed summary."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench import harness
from bench.scaling.cli import command_line
from bench.scaling.constants import ACTION, COMMAND, MARKETPLACE, NAME, WAIT_ACTION


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def assemble(args: argparse.Namespace, machine, database, setup, workers, clusters,
             tenants) -> dict[str, Any]:  # fmt: skip
    from django.conf import settings

    from orchestration import conf

    rate = "steps_per_s_steady"
    one = workers.get(str(min(args.worker_list))) if args.worker_list else None
    cw = args.cluster_workers
    alone = tenants.get("1 tenant alone", {}).get(rate)
    summary: dict[str, Any] = {
        "workers_steps_per_s": {n: r[rate] for n, r in workers.items()},
        "workers_speedup_vs_fewest": {
            n: _ratio(r[rate], one and one[rate]) for n, r in workers.items()
        },
        "clusters_steps_per_s": {k: r[rate] for k, r in clusters.items()},
        "clusters_runs_per_cluster": {k: r["runs_per_cluster"] for k, r in clusters.items()},
        "second_cluster_gain_orm": _ratio(
            clusters[f"2x{cw} orm"][rate], clusters[f"1x{cw} orm"][rate]
        ),
        "second_cluster_gain_redis": _ratio(
            clusters[f"2x{cw} redis"][rate], clusters[f"1x{cw} redis"][rate]
        ),
        # Steps that wait (not CPU-bound): what another machine's workers can add here.
        "second_cluster_gain_wait": _ratio(
            clusters.get(f"2x{cw} wait", {}).get(rate), clusters.get(f"1x{cw} wait", {}).get(rate)
        ),
        "tenants_steps_per_s": {k: r[rate] for k, r in tenants.items()},
        "idle_tenants_cost": _ratio(
            tenants.get(f"1 busy + {args.tenants} idle", {}).get(rate), alone
        ),
        "busy_tenants_vs_alone": _ratio(tenants.get(f"{args.tenants} busy", {}).get(rate), alone),
        # The watchdog's slow sweep pass with every tenant idle: sliced, and all at once.
        "sweep_slow_pass_s": setup.get("sweep", {}).get("slow_pass_s"),
        "sweep_slow_pass_all_tenants_s": setup.get("sweep", {}).get("slow_pass_all_tenants_s"),
        "durable_commits": conf.get("SYNCHRONOUS_COMMIT") >= 1,
    }
    return {
        "benchmark": NAME,
        "timestamp": harness.now_iso(),
        "command": command_line(args),
        "summary": summary,
        "machine": machine,
        "git": harness.git_state(),
        "database": database,
        "versions": harness.package_versions("django", "django-q2", "django-tenants", "psycopg"),
        "settings": {
            "jobs": args.jobs,
            "rounds": args.rounds,
            "job_kind": f"{MARKETPLACE}.{ACTION}",
            "wait_job_kind": f"{MARKETPLACE}.{WAIT_ACTION} (5 steps of 20 ms)",
            "wait_jobs": args.wait_jobs,
            "worker_counts": args.worker_list,
            "cluster_workers": cw,
            "tenants": args.tenants,
            "jobs_per_tenant": args.jobs_per_tenant,
            "redis_url": args.redis_url,
            "q_cluster": {
                k: settings.Q_CLUSTER.get(k) for k in ("workers", "poll", "bulk", "queue_limit")
            },
            "cluster_command": " ".join(COMMAND[1:]),
            "orchestration": {k: conf.get(k) for k in conf.DEFAULTS},
        },
        "setup": setup,
        "workers": workers,
        "clusters": clusters,
        "tenants": tenants,
        "notes": [
            "steps_per_s_steady: (jobs - 1) x 5 / (first JobRun finished -> last finished)",
            "a cluster = manage.py run_workers (a watchdog and its qcluster), as each machine "
            "runs it; two clusters = two of them on this one machine (2 CPUs): they stand "
            "for two machines only as far as the database sees them",
            "the redis runs set REDIS_URL for the enqueue child and the clusters: django-q2's "
            "broker (and the channel layer) in Redis",
            "each configuration runs --rounds times, alternating with the others (reversed "
            "every other round); each record is its median round's (rounds: every round's "
            "rate); the 1,000-busy run: one round",
            "not a test: nothing asserts on these figures",
        ],
    }


def print_summary(result: dict[str, Any], path: Path) -> None:
    s = result["summary"]
    m = result["machine"]
    lines = ["", f"== {NAME} ({m['cpu_count']} CPUs, load {m['loadavg_at_start']} -> "
             f"{m['loadavg_at_end']}; durable commits: {s['durable_commits']})"]  # fmt: skip
    for n, value in s["workers_steps_per_s"].items():
        lines.append(f"  {n} worker(s), one cluster: {value} steps/s "
                     f"(x{s['workers_speedup_vs_fewest'][n]})")  # fmt: skip
    for k, value in s["clusters_steps_per_s"].items():
        lines.append(f"  clusters {k}: {value} steps/s, runs per cluster "
                     f"{s['clusters_runs_per_cluster'][k]}")  # fmt: skip
    lines.append(f"  second cluster gain: ORM x{s['second_cluster_gain_orm']}, "
                 f"Redis x{s['second_cluster_gain_redis']}, "
                 f"waiting steps x{s['second_cluster_gain_wait']}")  # fmt: skip
    for k, value in s["tenants_steps_per_s"].items():
        lines.append(f"  tenants {k}: {value} steps/s")
    lines.append(f"  slow sweep pass: {s['sweep_slow_pass_s']} s ({s['sweep_slow_pass_all_tenants_s']}"
                 " s visiting every tenant)")  # fmt: skip
    lines.append(f"  idle tenants: x{s['idle_tenants_cost']} of alone; all busy: "
                 f"x{s['busy_tenants_vs_alone']} of alone")  # fmt: skip
    lines += harness.measured_lines(result, path, took=True)
    print("\n".join(lines))
