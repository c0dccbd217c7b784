"""The command line: options (scaled by ``--scale``) and the rerun command."""

from __future__ import annotations

import argparse

from bench.chaos.constants import DESCRIPTION, SCENARIOS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=DESCRIPTION)
    p.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every job count (dev: 0.3)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=20261202)
    # 1. kill storm
    p.add_argument("--ebay", type=int, default=200, help="eBay publish jobs per tenant")
    p.add_argument("--etsy", type=int, default=180, help="Etsy publish jobs per tenant")
    p.add_argument("--vinted", type=int, default=20, help="Vinted publish jobs per tenant")
    p.add_argument("--max-retries", type=int, default=20)
    p.add_argument("--retry-base", type=float, default=0.5, help="ORCHESTRATION_RETRY_BASE_SECONDS")
    p.add_argument("--retry-max", type=float, default=4.0, help="ORCHESTRATION_RETRY_MAX_SECONDS")
    p.add_argument("--etsy-rate", type=int, default=600, help="Etsy starts/min per tenant")
    p.add_argument("--fault-timeout", type=float, default=0.3, help="seconds a 'timeout' holds")
    p.add_argument("--kill-min", type=float, default=2.0)
    p.add_argument("--kill-max", type=float, default=5.0)
    p.add_argument("--storm-seconds", type=float, default=90, help="kills stop after this")
    p.add_argument("--storm-timeout", type=float, default=300, help="liveness bound (s)")
    # 2. PostgreSQL restart
    p.add_argument("--pg-jobs", type=int, default=2000)
    p.add_argument(
        "--pg-outage",
        type=float,
        default=5.0,
        help="after the restart: stop PostgreSQL this long, then start it (0: skip)",
    )
    p.add_argument("--pg-step-ms", type=float, default=6.0)
    p.add_argument("--pg-timeout", type=float, default=240, help="liveness bound (s)")
    # 3. ASGI restart
    p.add_argument("--asgi-jobs", type=int, default=150)
    p.add_argument("--asgi-step-ms", type=float, default=60.0)
    p.add_argument("--asgi-down", choices=("kill", "term"), default="kill")
    p.add_argument("--asgi-timeout", type=float, default=150, help="liveness bound (s)")
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/reliability.md")
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    for key in ("ebay", "etsy", "vinted", "pg_jobs", "asgi_jobs"):
        setattr(args, key, max(1, round(getattr(args, key) * args.scale)))
    return args


def command_line(args: argparse.Namespace) -> str:
    extra = f" --scale {args.scale:g}" if args.scale != 1 else ""
    if args.scenarios != list(SCENARIOS):
        extra += f" --only {','.join(args.scenarios)}"
    return f".venv/bin/python -m bench.chaos{extra}"
