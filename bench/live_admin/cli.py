"""The command line: options and the rerun command."""

from __future__ import annotations

import argparse
import os
import sys

from bench.live_admin.constants import NAME, REDIS_URL


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m bench.{NAME}",
        description="Live admin: step commit -> DOM latency; admin lists at 1k vs 1M jobs.",
    )
    parser.add_argument("--jobs", type=int, default=100, help="jobs in the watched batch (<= 100)")
    parser.add_argument("--step-ms", type=float, default=50, help="sleep per step (ms)")
    parser.add_argument(
        "--warmup-jobs",
        type=int,
        default=24,
        help="1-step jobs run first (3 claims of 8: every worker process sends once)",
    )
    parser.add_argument("--layers", default="postgres,redis", help="postgres,redis (or one)")
    parser.add_argument("--redis-url", default=REDIS_URL, help="REDIS_URL of the redis run")
    parser.add_argument("--workers", type=int, default=2, help="qcluster workers (Q_WORKERS)")
    parser.add_argument(
        "--loads",
        default="none,durable,async",
        help="per layer: none (the batch alone), durable (+ no-op load, durable commits), "
        "async (+ load, ORCHESTRATION_SYNCHRONOUS_COMMIT=0)",
    )
    parser.add_argument("--load-jobs", type=int, default=6000, help="noopmkt.noop5 load jobs")
    parser.add_argument("--load-workers", type=int, default=4, help="qcluster workers under load")
    parser.add_argument(
        "--load-lead-steps", type=int, default=1000, help="load steps before the watched batch"
    )
    parser.add_argument("--small-rows", type=int, default=1_000, help="jobs in the small table")
    parser.add_argument("--large-rows", type=int, default=1_000_000, help="jobs in the large one")
    parser.add_argument("--requests", type=int, default=10, help="timed requests per view")
    parser.add_argument("--timeout", type=float, default=180, help="liveness bound (seconds)")
    parser.add_argument("--skip-live", action="store_true", help="only the admin lists")
    parser.add_argument("--skip-admin", action="store_true", help="only the live latency")
    parser.add_argument("--keep-db", action="store_true", help="leave the bench database")
    args = parser.parse_args(small_defaults(argv))
    args.jobs = max(1, min(args.jobs, 100))  # one list page shows 100 rows
    args.layer_list = [x.strip() for x in args.layers.split(",") if x.strip()]
    for layer in args.layer_list:
        if layer not in ("postgres", "redis"):
            parser.error(f"unknown layer {layer!r}")
    args.load_list = [x.strip() for x in args.loads.split(",") if x.strip()]
    for mode in args.load_list:
        if mode not in ("none", "durable", "async"):
            parser.error(f"unknown load {mode!r}")
    return args


def small_defaults(argv: list[str] | None) -> list[str]:
    """Under ``CI=true`` the load is small (explicit options still win)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        argv = ["--loads", "none,async", "--load-jobs", "2000", *argv]
    return argv


def command_line(args: argparse.Namespace) -> str:
    return (
        f".venv/bin/python -m bench.{NAME} --jobs {args.jobs} --step-ms {args.step_ms:g} "
        f"--layers {','.join(args.layer_list)} --workers {args.workers} "
        f"--loads {','.join(args.load_list)} --load-jobs {args.load_jobs} "
        f"--load-workers {args.load_workers} --load-lead-steps {args.load_lead_steps} "
        f"--small-rows {args.small_rows} --large-rows {args.large_rows} --requests {args.requests}"
        + (" --skip-live" if args.skip_live else "")
        + (" --skip-admin" if args.skip_admin else "")
    )
