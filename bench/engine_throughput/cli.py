"""The command line: options, their small defaults under ``CI=true``, the rerun command."""

from __future__ import annotations

import argparse
import os
import sys

from bench.engine_throughput.constants import MAX_PROFILE_JOBS, NAME


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine_throughput",
        description="Engine steps/s vs raw django-q2 tasks/s on a fresh database.",
    )
    parser.add_argument(
        "--jobs", type=int, default=1000, help="engine jobs, 5 no-op steps each (5,000 steps)"
    )
    parser.add_argument(
        "--tasks",
        type=int,
        default=2500,
        help="raw django-q2 no-op tasks (and procrastinate jobs)",
    )
    parser.add_argument("--workers", type=int, default=2, help="qcluster workers (Q_WORKERS)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help=(
            "alternate the peers' and the engine's runs this many times; the ratio is of the "
            "medians (5: two rounds thrown off by the VM's ±15%% swings do not move a median)"
        ),
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
