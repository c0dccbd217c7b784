"""The command line: options and the rerun command."""

from __future__ import annotations

import argparse

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
    parser.add_argument("--small-rows", type=int, default=1_000, help="jobs in the small table")
    parser.add_argument("--large-rows", type=int, default=1_000_000, help="jobs in the large one")
    parser.add_argument("--requests", type=int, default=10, help="timed requests per view")
    parser.add_argument("--timeout", type=float, default=180, help="liveness bound (seconds)")
    parser.add_argument("--skip-live", action="store_true", help="only the admin lists")
    parser.add_argument("--skip-admin", action="store_true", help="only the live latency")
    parser.add_argument("--keep-db", action="store_true", help="leave the bench database")
    args = parser.parse_args(argv)
    args.jobs = max(1, min(args.jobs, 100))  # one list page shows 100 rows
    args.layer_list = [x.strip() for x in args.layers.split(",") if x.strip()]
    for layer in args.layer_list:
        if layer not in ("postgres", "redis"):
            parser.error(f"unknown layer {layer!r}")
    return args


def command_line(args: argparse.Namespace) -> str:
    return (
        f".venv/bin/python -m bench.{NAME} --jobs {args.jobs} --step-ms {args.step_ms:g} "
        f"--layers {','.join(args.layer_list)} --workers {args.workers} "
        f"--small-rows {args.small_rows} --large-rows {args.large_rows} --requests {args.requests}"
        + (" --skip-live" if args.skip_live else "")
        + (" --skip-admin" if args.skip_admin else "")
    )
