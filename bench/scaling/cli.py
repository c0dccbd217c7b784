"""The command line: options and the rerun command."""

from __future__ import annotations

import argparse
import os
import sys

from bench.scaling.constants import NAME, REDIS_URL


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m bench.{NAME}",
        description="Engine steps/s with 1, 2, 4 workers, two clusters, 1,000 tenants.",
    )
    parser.add_argument("--jobs", type=int, default=1000, help="noop5 jobs per run")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs of each configuration, alternating (the median is reported)",
    )
    parser.add_argument(
        "--wait-jobs", type=int, default=300,
        help="wait5 jobs (5 steps waiting 20 ms each) of the one- and two-cluster runs that "
        "are not CPU-bound (0 = skip)",
    )  # fmt: skip
    parser.add_argument("--worker-counts", default="1,2,4", help="workers of one cluster")
    parser.add_argument("--cluster-workers", type=int, default=2, help="workers per cluster")
    parser.add_argument("--tenants", type=int, default=1000, help="tenants in the tenant runs")
    parser.add_argument(
        "--jobs-per-tenant", type=int, default=2, help="jobs of each busy tenant (all busy)"
    )
    parser.add_argument("--redis-url", default=REDIS_URL, help="REDIS_URL of the redis runs")
    parser.add_argument("--skip-tenants", action="store_true", help="no 1,000-tenant runs")
    parser.add_argument("--timeout", type=float, default=900, help="liveness bound per run (s)")
    parser.add_argument("--keep-db", action="store_true", help="leave the bench database")
    args = parser.parse_args(small_defaults(argv))
    if args.rounds < 1 or args.jobs < 2 or args.wait_jobs == 1 or args.wait_jobs < 0:
        parser.error(
            "--rounds must be at least 1, --jobs at least 2 and --wait-jobs 0 or at least 2 "
            "(a rate needs two jobs)"
        )
    args.worker_list = [int(x) for x in args.worker_counts.split(",") if x.strip()]
    return args


def small_defaults(argv: list[str] | None) -> list[str]:
    """Under ``CI=true`` the sizes default small (explicit options still win)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        argv = ["--jobs", "100", "--wait-jobs", "40", "--tenants", "50", "--rounds", "1", *argv]
    return argv


def command_line(args: argparse.Namespace) -> str:
    return (
        f".venv/bin/python -m bench.{NAME} --jobs {args.jobs} --wait-jobs {args.wait_jobs} "
        f"--rounds {args.rounds} --worker-counts "
        f"{','.join(map(str, args.worker_list))} --cluster-workers {args.cluster_workers} "
        f"--tenants {args.tenants} --jobs-per-tenant {args.jobs_per_tenant}"
        + (" --skip-tenants" if args.skip_tenants else "")
    )
