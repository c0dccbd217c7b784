"""Part 1: the dispatcher cycle timed in this process at each tenant count, with its plans."""

from __future__ import annotations

import argparse
from typing import Any

from bench import harness
from bench.dispatch_fairness.constants import (
    PART1_ACTION,
    PART1_JOBS,
    PART1_MARKETPLACE,
    REAL_TENANTS,
)
from bench.dispatch_fairness.cycle import Timings, captured_sql, measure
from bench.dispatch_fairness.plans import describe, server_side_sweep
from bench.dispatch_fairness.setup import execute, queue_part1_work


def run_cycles(args: argparse.Namespace) -> dict[str, Any]:
    from orchestration import conf
    from orchestration.engine import marks, session

    print(f"  part 1: {PART1_JOBS} queued jobs in each of {len(REAL_TENANTS)} tenants ...")
    batches = queue_part1_work()
    # The session a drain works in (durable commits unless SYNCHRONOUS_COMMIT=0, generic plans).
    session.tune_worker_session()
    ((synchronous_commit,),) = execute("SHOW synchronous_commit")
    limit = int(conf.get("CLAIM_BATCH"))
    sqls = {
        "pick": captured_sql(marks.pick_tenant),
        "seconds_until_next_wake": captured_sql(marks.seconds_until_next_wake),
    }
    # (tenants, parked share): every count with a constant few parked rows, then the largest
    # count again with parked rows in proportion.
    cases = [(n, False) for n in args.counts] + [(max(args.counts), True)]
    timings = {case: Timings() for case in cases}
    rounds = max(1, args.rounds)
    per_round = max(1, args.cycles // rounds)
    for r in range(rounds):  # interleaved, so drifting load on the machine hits every count
        for count, share in cases:
            measure(
                count, cycles=per_round, warmup=args.warmup, limit=limit,
                timings=timings[(count, share)], parked_share=share,
            )  # fmt: skip
        print(f"  part 1: round {r + 1}/{rounds} done (load {harness.loadavg()})", flush=True)
    sweep = server_side_sweep(args.sweep, sqls)
    results = []
    for count, share in cases:
        row = describe(count, timings[(count, share)], limit, sqls, share)
        results.append(row)
        print(
            f"  {count:>6} tenants{' (3 % parked)' if share else ''}: pick p50 "
            f"{row['pick_us']['p50']} us (p95 {row['pick_us']['p95']}), cycle p50 "
            f"{row['cycle_us']['p50']} us, idle cycle p50 {row['idle_cycle_us']['p50']} us; "
            f"pick plan {row['explain']['pick']['indexes_used'] or row['explain']['pick']['seq_scans']}",
            flush=True,
        )
    return {
        "note": (
            "in-process, one connection, no q2, DEBUG off. cycle = pick_tenant() + one claim "
            "attempt in the picked tenant (claim_jobs(limit=CLAIM_BATCH), incl. the schema "
            "switch, in a transaction rolled back so every cycle sees the same work; the "
            "rollback wrapper adds a SAVEPOINT/RELEASE pair) + mark_idle() with a stale "
            "signal_seq (its UPDATE, no change) + seconds_until_next_wake(). A drain runs one "
            "such cycle per tenant turn (TENANT_TURN_SECONDS), not per job. idle_cycle = "
            "pick_tenant() finding no ready tenant + seconds_until_next_wake(). Microseconds. "
            "Rounds interleave the table sizes; the table is VACUUM ANALYZEd before each; the "
            "timed picks add dead row versions (table_after). Plans: EXPLAIN (ANALYZE, BUFFERS) "
            "on a freshly vacuumed table, rolled back."
        ),
        "synchronous_commit": synchronous_commit,
        "rounds": rounds,
        "real_tenants": REAL_TENANTS,
        "jobs_queued_per_real_tenant": PART1_JOBS,
        "job_kind": f"{PART1_MARKETPLACE}.{PART1_ACTION}",
        "claim_batch": limit,
        "part1_batches": batches,
        "sql": sqls,
        "server_side_sweep": sweep,
        "server_side_sweep_note": (
            "microseconds per execution inside the server (DO loop of 500, each planned and "
            "committed; min of 3 loops), with the plan the planner chooses and with "
            "enable_seqscan = off; five_ready loops commit picks (the table is vacuumed after)"
        ),
        "by_tenant_count": [r for r in results if "%" not in r["parked"]],
        "parked_in_proportion": next(r for r in results if "%" in r["parked"]),
    }
