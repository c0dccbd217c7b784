"""Dispatcher cost and fairness (issue 4): what a drain pays per turn, and how long an idle
tenant's job waits behind another tenant's 10,000-job batch.

One fresh database, five real tenants (``manage.py create_tenant``). Two parts:

1. **Dispatcher cycle vs number of tenants** (in this process, no q2, ``DEBUG`` off,
   commits as a drain makes them). The public ``TenantQueue`` gets N rows (default 10,
   100, 1,000, 10,000): the five real tenants, each with queued jobs (ready), and N - 5
   rows of tenants with nothing to run (``ready_at`` NULL, most with a serving history;
   they need no schema: the picks never visit them), of which a constant 4 are "parked"
   (2 waiting for a backoff hours away, 2 paused with work). Then ``--cycles`` dispatcher
   cycles (in ``--rounds`` interleaved rounds), each: ``pick_tenant()``; one claim attempt
   in the picked tenant (``claim_jobs(limit=CLAIM_BATCH)`` in a transaction rolled back,
   so every cycle sees the same work); ``mark_idle()`` with a stale ``signal_seq`` (the
   statement's cost, no change); and ``seconds_until_next_wake()``. Also the idle case (no
   tenant ready: ``pick_tenant()`` returns None, then ``seconds_until_next_wake()``),
   ``EXPLAIN (ANALYZE, BUFFERS)`` of the pick and wake queries at every N (after ``VACUUM
   ANALYZE``), and the largest N again with 3 % of the rows parked.
2. **Start latency of an idle tenant's job** under another tenant's batch, with a real
   ``manage.py qcluster`` (``--workers`` 2): tenant A gets ``--jobs`` (10,000) jobs of
   ``testmkt.one`` whose step sleeps ``--step-seconds``; once A is running, tenant B gets
   one job every ``--interval`` s (``--samples`` of them) and each one's latency is read
   from the database: ``MarketplaceJob.created_at`` → ``JobRun.started_at`` (start) and →
   ``completed_at`` (done). The run stops after the samples (A is paused so the drains
   hand back, then SIGTERM to the cluster's main PID); A's remaining jobs go with the
   database.

Nothing here asserts on timings.

    .venv/bin/python -m bench.dispatch_fairness
"""

from __future__ import annotations

import time
from typing import Any

from bench import harness
from bench.dispatch_fairness.cli import parse_args
from bench.dispatch_fairness.constants import NAME
from bench.dispatch_fairness.cycles import run_cycles
from bench.dispatch_fairness.latency import run_latency
from bench.dispatch_fairness.setup import provision
from bench.dispatch_fairness.summary import (
    assemble,
    describe_database,
    describe_settings,
    print_summary,
)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    harness.install_sigterm_handler()
    started = time.perf_counter()
    machine = harness.machine_info()
    print(
        f"[{NAME}] part 1: dispatcher cycles at {args.counts} tenants; part 2: "
        f"{args.samples} jobs of B under A's {args.jobs}-job batch, {args.workers} workers"
    )
    with harness.throwaway_database(keep=args.keep_db) as (db, embedded):
        env = harness.cluster_env(db.url, workers=args.workers)
        setup = provision(env)
        harness.setup_django(env)
        import tests.engine_providers  # noqa: F401  (registers the test providers here too)

        cycles = run_cycles(args)
        latency = run_latency(args, env)
        settings_used = describe_settings(args)
        database = describe_database(embedded, db.name)

    result = assemble(args, machine, database, setup, cycles, latency, settings_used)
    path = harness.finish_result(NAME, result, started=started)
    print_summary(result, path)
    return result
