"""The command line: options and the rerun command."""

from __future__ import annotations

import argparse

from bench.dispatch_fairness.constants import NAME, REAL_TENANTS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m bench.{NAME}",
        description="Dispatcher cycle cost vs tenant count; idle tenant's start latency.",
    )
    parser.add_argument(
        "--tenant-counts",
        default="10,100,1000,10000",
        help="TenantQueue sizes for part 1 (comma-separated; 5 of them are real tenants)",
    )
    parser.add_argument(
        "--sweep-counts",
        default="10,100,300,1000,3000,10000",
        help="TenantQueue sizes for the in-server query timings (part 1)",
    )
    parser.add_argument("--cycles", type=int, default=1000, help="timed cycles per tenant count")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (part 1)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed cycles per round")
    parser.add_argument("--jobs", type=int, default=10000, help="tenant A's batch (part 2)")
    parser.add_argument(
        "--step-seconds", type=float, default=0.02, help="sleep of each A/B step (part 2)"
    )
    parser.add_argument("--samples", type=int, default=8, help="B jobs, one after the other")
    parser.add_argument("--interval", type=float, default=3.7, help="seconds between B submissions")
    parser.add_argument(
        "--idle-rows", type=int, default=998, help="idle TenantQueue rows during part 2"
    )
    parser.add_argument("--workers", type=int, default=2, help="qcluster workers (Q_WORKERS)")
    parser.add_argument(
        "--timeout", type=float, default=60, help="liveness bound per wait (seconds)"
    )
    parser.add_argument(
        "--keep-db", action="store_true", help="leave the bench database in place (debugging)"
    )
    args = parser.parse_args(argv)
    args.counts = [int(n) for n in args.tenant_counts.split(",") if n.strip()]
    args.sweep = [int(n) for n in args.sweep_counts.split(",") if n.strip()]
    if min(args.counts + args.sweep) < len(REAL_TENANTS):
        parser.error(f"every tenant count must be at least {len(REAL_TENANTS)}")
    return args


def command_line(args: argparse.Namespace) -> str:
    return (
        f".venv/bin/python -m bench.{NAME} --tenant-counts {args.tenant_counts} "
        f"--sweep-counts {args.sweep_counts} "
        f"--cycles {args.cycles} --rounds {args.rounds} --jobs {args.jobs} --step-seconds {args.step_seconds} "
        f"--samples {args.samples} --interval {args.interval} --workers {args.workers}"
    )
