"""The result: settings, the JSON document and the printed summary."""

from __future__ import annotations

import argparse
from typing import Any

from bench import harness
from bench.dispatch_fairness.cli import command_line
from bench.dispatch_fairness.constants import NAME


def describe_settings(args: argparse.Namespace) -> dict[str, Any]:
    from django.conf import settings

    from orchestration import conf
    from orchestration.engine import slots

    q = settings.Q_CLUSTER
    keys = ("workers", "poll", "queue_limit", "bulk", "save_limit", "timeout", "retry", "recycle")
    return {
        "workers": args.workers,
        "tenant_counts": args.counts,
        "sweep_counts": args.sweep,
        "cycles": args.cycles,
        "rounds": args.rounds,
        "warmup_per_round": args.warmup,
        "debug": settings.DEBUG,
        "a_jobs": args.jobs,
        "step_seconds": args.step_seconds,
        "samples": args.samples,
        "interval_s": args.interval,
        "q_cluster": {k: q.get(k) for k in keys},
        "q2_broker": "redis" if "redis" in q else "orm",
        "conn_max_age": settings.DATABASES["default"].get("CONN_MAX_AGE"),
        "orchestration": {k: conf.get(k) for k in conf.DEFAULTS},
        "drain_slots": slots.drain_slots(),
    }


describe_database = harness.describe_database


def assemble(args, machine, database, setup, cycles, latency, settings_used) -> dict[str, Any]:
    by_n = cycles["by_tenant_count"]
    parked = cycles["parked_in_proportion"]
    at_1000 = next((r for r in by_n if r["tenants"] == 1000), by_n[-1])
    return {
        "benchmark": NAME,
        "timestamp": harness.now_iso(),
        "command": command_line(args),
        "summary": {
            "pick_us_p50": {r["tenants"]: r["pick_us"]["p50"] for r in by_n},
            "pick_us_mean": {r["tenants"]: r["pick_us"]["mean"] for r in by_n},
            "pick_us_p95": {r["tenants"]: r["pick_us"]["p95"] for r in by_n},
            "cycle_us_p50": {r["tenants"]: r["cycle_us"]["p50"] for r in by_n},
            "cycle_us_mean": {r["tenants"]: r["cycle_us"]["mean"] for r in by_n},
            "cycle_us_p95": {r["tenants"]: r["cycle_us"]["p95"] for r in by_n},
            "idle_cycle_us_p50": {r["tenants"]: r["idle_cycle_us"]["p50"] for r in by_n},
            "claim_attempt_us_p50": {r["tenants"]: r["claim_attempt_us"]["p50"] for r in by_n},
            "in_server_pick_none_ready_us": {
                r["tenants"]: [r["pick_none_ready"]["us"], r["pick_none_ready"]["plan"]]
                for r in cycles["server_side_sweep"]
            },
            "in_server_pick_none_ready_us_seqscan_off": {
                r["tenants"]: r["pick_none_ready"]["us_seqscan_off"]
                for r in cycles["server_side_sweep"]
            },
            "in_server_wake_none_ready_us": {
                r["tenants"]: [
                    r["seconds_until_next_wake_none_ready"]["us"],
                    r["seconds_until_next_wake_none_ready"]["plan"],
                ]
                for r in cycles["server_side_sweep"]
            },
            "pick_server_side_us": {r["tenants"]: r["server_side_us"]["pick"]["min"] for r in by_n},
            "pick_server_side_us_none_ready": {
                r["tenants"]: r["server_side_us_when_none_ready"]["pick"]["min"] for r in by_n
            },
            "wake_server_side_us": {
                r["tenants"]: r["server_side_us"]["seconds_until_next_wake"]["min"] for r in by_n
            },
            f"parked_in_proportion_at_{parked['tenants']}": {
                "parked": parked["parked"],
                "pick_us_p50": parked["pick_us"]["p50"],
                "cycle_us_p50": parked["cycle_us"]["p50"],
                "idle_cycle_us_p50": parked["idle_cycle_us"]["p50"],
                "pick_server_side_us": parked["server_side_us"]["pick"]["min"],
                "pick_server_side_us_none_ready": parked["server_side_us_when_none_ready"]["pick"][
                    "min"
                ],
                "wake_server_side_us": parked["server_side_us"]["seconds_until_next_wake"]["min"],
                "pick_execution_ms": parked["explain"]["pick"]["execution_ms"],
                "wake_execution_ms": parked["explain"]["seconds_until_next_wake"]["execution_ms"],
            },
            f"pick_plan_at_{at_1000['tenants']}": {
                "indexes_used": at_1000["explain"]["pick"]["indexes_used"],
                "seq_scans": at_1000["explain"]["pick"]["seq_scans"],
                "execution_ms": at_1000["explain"]["pick"]["execution_ms"],
                "with_seqscan_off": {
                    "indexes_used": at_1000["explain_pick_seqscan_off"]["indexes_used"],
                    "execution_ms": at_1000["explain_pick_seqscan_off"]["execution_ms"],
                },
            },
            "b_start_latency_s": [r["start_latency_s"] for r in latency["samples"]],
            "b_start_latency_max_s": latency["start_latency_s"].get("max"),
            "b_start_latency_median_s": latency["start_latency_s"].get("p50"),
            "b_done_latency_max_s": latency["done_latency_s"].get("max"),
            "bound_s": latency["bound"]["bound_s"],
            "bound_held": latency["bound"]["held"],
            "a_jobs_completed": latency["tenant_a_progress"]["completed_at_end_of_sampling"],
        },
        "machine": machine,
        "git": harness.git_state(),
        "database": database,
        "versions": harness.package_versions("django", "django-q2", "django-tenants", "psycopg"),
        "settings": settings_used,
        "setup": setup,
        "dispatcher_cycles": cycles,
        "idle_tenant_latency": latency,
        "notes": [
            "part 1 runs in the benchmark process (no q2); part 2 with a real qcluster",
            "the load average is recorded: other work on the machine moves these figures",
            "not a test: nothing asserts on these figures",
        ],
    }


def print_summary(result: dict[str, Any], path) -> None:
    s = result["summary"]
    lat = result["idle_tenant_latency"]
    plan_key = next(k for k in s if k.startswith("pick_plan_at_"))
    lines = [
        "",
        f"== {NAME} ({result['settings']['workers']} workers, {result['machine']['cpu_count']} "
        f"CPUs, PostgreSQL {result['database']['server_version']}, load "
        f"{result['machine']['loadavg_at_start']} -> {result['machine']['loadavg_at_end']})",
        "  dispatcher, microseconds (p50 / mean / p95):",
    ]
    for row in result["dispatcher_cycles"]["by_tenant_count"]:
        p, c, i = row["pick_us"], row["cycle_us"], row["idle_cycle_us"]
        srv = row["server_side_us"]
        lines.append(
            f"    {row['tenants']:>6} tenants: pick {p['p50']} / {p['mean']} / {p['p95']}   "
            f"cycle {c['p50']} / {c['mean']} / {c['p95']}   idle cycle {i['p50']} / "
            f"{i['mean']} / {i['p95']}   in-server: pick {srv['pick']['min']}, wake "
            f"{srv['seconds_until_next_wake']['min']}, pick (none ready) "
            f"{row['server_side_us_when_none_ready']['pick']['min']}"
        )
    parked = result["dispatcher_cycles"]["parked_in_proportion"]
    p, c, i = parked["pick_us"], parked["cycle_us"], parked["idle_cycle_us"]
    lines.append(
        f"    {parked['tenants']:>6} tenants, {parked['parked']}: pick {p['p50']} / {p['mean']} / "
        f"{p['p95']}   cycle {c['p50']} / {c['mean']} / {c['p95']}   idle cycle {i['p50']} / "
        f"{i['mean']} / {i['p95']}"
    )
    plan = s[plan_key]
    lines += [
        f"  pick plan ({plan_key.removeprefix('pick_plan_at_')} tenants): indexes "
        f"{plan['indexes_used']}, seq scans {plan['seq_scans']}, {plan['execution_ms']} ms",
        f"  B start latency (s): {s['b_start_latency_s']}",
        f"    median {s['b_start_latency_median_s']}, max {s['b_start_latency_max_s']}; done max "
        f"{s['b_done_latency_max_s']}; bound {s['bound_s']} s "
        f"({'held' if s['bound_held'] else 'NOT held'}; docs say ~2-3 s)",
        f"  A: {s['a_jobs_completed']} of {lat['a_batch_jobs']} jobs completed by the end of "
        f"sampling ({lat['tenant_a_progress']['jobs_per_s']} jobs/s), {lat['drains']['tasks']} "
        "drain tasks",
    ]
    lines += harness.measured_lines(result, path)
    print("\n".join(lines))
