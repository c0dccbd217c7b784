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

import argparse
import re
import sys
import time
from collections import Counter
from typing import Any

from bench import harness

NAME = "dispatch_fairness"
# Five real tenants with work for part 1; the first two are A and B of part 2.
REAL_TENANTS = ["fair_a", "fair_b", "fair_c", "fair_d", "fair_e"]
TENANT_A, TENANT_B = REAL_TENANTS[0], REAL_TENANTS[1]
PART1_MARKETPLACE, PART1_ACTION, PART1_JOBS = "noopmkt", "one", 40
MARKETPLACE, ACTION = "testmkt", "one"  # part 2: one step reading the faults file (sleep)
IDLE_PREFIX = "idle_"
Q2_POLL_S = 0.2  # Q_CLUSTER["poll"] in config/settings.py
DOC_ESTIMATE_S = (2.0, 3.0)  # docs/engine.md "Hand-off to django-q2": "about 2-3 s"
_INDEX = re.compile(
    r"(Index Only Scan|Index Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\w+)"
)
_SEQ = re.compile(r"Seq Scan on (\w+)")
_EXEC = re.compile(r"Execution Time: ([\d.]+) ms")


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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    harness.install_sigterm_handler()
    started = time.perf_counter()
    machine = harness.machine_info()
    server, embedded = harness.server_url()
    print(
        f"[{NAME}] part 1: dispatcher cycles at {args.counts} tenants; part 2: "
        f"{args.samples} jobs of B under A's {args.jobs}-job batch, {args.workers} workers"
    )
    db = harness.BenchDatabase(server)
    with db:
        db.keep = args.keep_db
        harness.announce_database(db, server, embedded)
        env = harness.cluster_env(db.url, workers=args.workers)
        setup = provision(env)
        harness.setup_django(env)
        import tests.engine_providers  # noqa: F401  (registers the test providers here too)

        cycles = run_cycles(args)
        latency = run_latency(args, env)
        settings_used = describe_settings(args)
        database = describe_database(embedded, db.name)

    result = assemble(args, machine, database, setup, cycles, latency, settings_used)
    result["duration_s"] = round(time.perf_counter() - started, 1)
    result["machine"]["loadavg_at_end"] = harness.loadavg()
    path = harness.write_result(NAME, result)
    print_summary(result, path)
    return result


# --- setup --------------------------------------------------------------------------------


def provision(env: dict[str, str]) -> dict[str, Any]:
    migrate_s = harness.migrate(env)
    print(f"  migrated in {migrate_s:.1f}s; creating {len(REAL_TENANTS)} tenants ...", flush=True)
    tenants = harness.create_tenants(REAL_TENANTS, env=env)
    print(f"  tenants created in {sum(tenants.values()):.1f}s")
    return {"migrate_schemas_s": round(migrate_s, 2), "create_tenant_s": tenants}


def _tq() -> str:
    from tenants.models import TenantQueue

    return f"public.{TenantQueue._meta.db_table}"


def _execute(sql: str, params: list | tuple = ()) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def populate_idle(count: int, *, parked_share: bool = False) -> None:
    """Replace the idle rows: ``count`` tenants with nothing to run now (they need no schema).

    70 % were served before (``last_served_at`` within 30 days, a ``signal_seq``); none is
    ready. "Parked" rows are not idle for the queue's indexes: waiting for a backoff 1-24 h
    away (``next_wake_at``: the wake index) or paused with work (``ready_at`` set: the ready
    index; the pick skips them). By default a constant 2 + 2 of them whatever ``count``, so
    only the number of truly idle rows varies; ``parked_share``: 2 % + 1 % of ``count``.
    """
    _execute(f"DELETE FROM {_tq()} WHERE schema_name LIKE %s", [IDLE_PREFIX + "%"])
    if count <= 0:
        return
    if parked_share:
        wake, paused = "i %% 50 = 1", "i %% 100 = 0"
    else:
        wake, paused = "i IN (1, 2)", "i IN (3, 4)"
    _execute(
        f"""
        INSERT INTO {_tq()} (schema_name, ready_at, signal_seq, last_served_at, next_wake_at,
                             active_runs, paused)
        SELECT %s || lpad(i::text, 6, '0'),
               CASE WHEN {paused} THEN now() - interval '1 day' END,
               CASE WHEN i %% 10 < 7 THEN 1 + (random() * 500)::int ELSE 0 END,
               CASE WHEN i %% 10 < 7 THEN now() - random() * interval '30 days' END,
               CASE WHEN {wake} THEN now() + interval '1 hour'
                                     + random() * interval '23 hours' END,
               0,
               {paused}
          FROM generate_series(1, %s) AS i
        """,
        [IDLE_PREFIX, count],
    )


def vacuum_analyze() -> None:
    _execute(f"VACUUM ANALYZE {_tq()}")


def table_facts() -> dict[str, Any]:
    from tenants.models import TenantQueue

    table = TenantQueue._meta.db_table
    (row,) = _execute(
        f"""
        SELECT count(*), count(*) FILTER (WHERE ready_at IS NOT NULL AND NOT paused),
               count(*) FILTER (WHERE paused), count(*) FILTER (WHERE next_wake_at IS NOT NULL),
               pg_relation_size('{_tq()}') / 8192, pg_total_relation_size('{_tq()}') / 8192,
               (SELECT n_dead_tup FROM pg_stat_user_tables
                 WHERE schemaname = 'public' AND relname = %s)
          FROM {_tq()}
        """,
        [table],
    )
    keys = ("rows", "ready", "paused", "waiting_for_wake", "heap_pages", "total_pages", "dead")
    return dict(zip(keys, row, strict=True))


# --- part 1: the dispatcher cycle -----------------------------------------------------------


def queue_part1_work() -> dict[str, int]:
    """A batch of queued jobs in each real tenant (their claims are rolled back, so it stays).

    The resource policy rows a tenant's first claim creates are created (committed) here:
    inside the rolled-back claims they would be created again by every cycle.
    """
    from django_tenants.utils import schema_context

    from orchestration.services import JobSpec, batch_create
    from orchestration.services.claims import resource_policies

    batches = {}
    for schema in REAL_TENANTS:
        with schema_context(schema):
            batch = batch_create(
                name="dispatch cycles",
                jobs=[JobSpec(marketplace=PART1_MARKETPLACE, action=PART1_ACTION)] * PART1_JOBS,
            )
            resource_policies()
        batches[schema] = batch.pk
    return batches


def one_cycle(limit: int) -> tuple[str, int, tuple[int, int, int, int]]:
    """pick, claim attempt (rolled back), mark_idle (stale seq: no change), next wake.

    Returns (schema, jobs claimed, nanoseconds of each part).
    """
    from django.db import transaction
    from django_tenants.utils import schema_context

    from orchestration import dispatch
    from orchestration.services.runner import claim_jobs

    t0 = time.perf_counter_ns()
    picked = dispatch.pick_tenant()
    t1 = time.perf_counter_ns()
    if picked is None:
        raise harness.BenchError("pick_tenant() found no ready tenant in part 1")
    schema, _seq = picked
    with schema_context(schema), transaction.atomic():
        claimed = len(claim_jobs(limit=limit))
        transaction.set_rollback(True)
    t2 = time.perf_counter_ns()
    dispatch.mark_idle(schema, -1, None)
    t3 = time.perf_counter_ns()
    dispatch.seconds_until_next_wake()
    t4 = time.perf_counter_ns()
    return schema, claimed, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)


def idle_cycle() -> int:
    """What a drain pays when no tenant is ready: a pick that finds none, then the wake query."""
    from orchestration import dispatch

    t0 = time.perf_counter_ns()
    picked = dispatch.pick_tenant()
    dispatch.seconds_until_next_wake()
    elapsed = time.perf_counter_ns() - t0
    if picked is not None:
        raise harness.BenchError(f"pick_tenant() picked {picked[0]} with no tenant ready")
    return elapsed


def cycle_statements(limit: int) -> dict[str, Any]:
    """The statements of one cycle, by kind (``bench.engine_throughput.categorize``)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bench.engine_throughput import categorize

    connection.queries_log.clear()
    with CaptureQueriesContext(connection) as ctx:
        one_cycle(limit)
    kinds = [categorize(q["sql"]) for q in ctx.captured_queries]
    return {"count": len(kinds), "in_order": kinds}


def captured_sql(fn) -> str:
    """The (last) statement ``fn()`` sends, run in a transaction that is rolled back."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx, transaction.atomic():
        fn()
        transaction.set_rollback(True)
    statements = [q["sql"] for q in ctx.captured_queries if _tq().split(".")[1] in q["sql"]]
    return statements[-1]


def explain(sql: str, *, no_seqscan: bool = False) -> dict[str, Any]:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of ``sql`` (run twice, second kept; rolled back).

    ``no_seqscan``: with ``enable_seqscan = off``, to show the index plan the planner
    would use if a sequential scan of the (small) table were not cheaper.
    """
    from django.db import transaction

    lines: list[str] = []
    for _ in range(2):
        with transaction.atomic():
            if no_seqscan:
                _execute("SET LOCAL enable_seqscan = off")
            lines = [row[0] for row in _execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")]
            transaction.set_rollback(True)
    text = "\n".join(lines)
    exec_ms = _EXEC.search(text)
    return {
        "indexes_used": sorted({m.group(2) for m in _INDEX.finditer(text)}),
        "seq_scans": sorted({m.group(1) for m in _SEQ.finditer(text)}),
        "execution_ms": float(exec_ms.group(1)) if exec_ms else None,
        "plan": lines,
    }


def server_side_us(sql: str, *, repeats: int = 500, trials: int = 3) -> dict[str, float]:
    """Microseconds per execution of ``sql`` inside the server (a ``DO`` loop, each execution
    planned and committed, as a drain's are): the query's own cost, without the client round
    trip and Python. Min and median of ``trials`` loops."""
    from django.db import connection

    if "$bench$" in sql:
        raise harness.BenchError("the statement contains the DO block's quote tag")
    block = (
        f"DO $do$ BEGIN FOR i IN 1..{repeats} LOOP EXECUTE $bench${sql}$bench$; COMMIT; "
        "END LOOP; END $do$"
    )
    per: list[float] = []
    for _ in range(trials):
        with connection.cursor() as cursor:
            started = time.perf_counter_ns()
            cursor.execute(block)
            per.append((time.perf_counter_ns() - started) / 1000 / repeats)
    per.sort()
    return {"min": round(per[0], 1), "median": round(per[len(per) // 2], 1)}


class Timings:
    """Samples of one table size, pooled over the rounds."""

    def __init__(self) -> None:
        self.parts: list[list[float]] = [[], [], [], []]
        self.totals: list[float] = []
        self.idle: list[float] = []
        self.picks: Counter[str] = Counter()
        self.claimed: Counter[int] = Counter()
        self.facts: dict[str, Any] = {}


def measure(
    count: int, *, cycles: int, warmup: int, limit: int, timings: Timings, parked_share: bool
) -> None:
    """One round at ``count`` tenants: busy cycles, then idle cycles (no tenant ready)."""
    populate_idle(count - len(REAL_TENANTS), parked_share=parked_share)
    vacuum_analyze()
    timings.facts["table_before"] = table_facts()
    for i in range(warmup + cycles):
        schema, n, ns = one_cycle(limit)
        if i < warmup:
            continue
        timings.picks[schema] += 1
        timings.claimed[n] += 1
        for part, value in zip(timings.parts, ns, strict=True):
            part.append(value / 1000)
        timings.totals.append(sum(ns) / 1000)
    timings.facts["table_after"] = table_facts()
    # The idle case: no tenant ready (the real ones are set aside, then restored).
    _execute(f"UPDATE {_tq()} SET ready_at = NULL WHERE schema_name = ANY(%s)", [REAL_TENANTS])
    try:
        idle = [idle_cycle() / 1000 for _ in range(warmup + cycles)]
        timings.idle += idle[warmup:]
    finally:
        _execute(f"UPDATE {_tq()} SET ready_at = now() WHERE schema_name = ANY(%s)", [REAL_TENANTS])


def describe(count: int, timings: Timings, limit: int, sqls: dict[str, str], parked_share: bool):
    """The pooled figures of one table size, with plans and one cycle's statements."""
    populate_idle(count - len(REAL_TENANTS), parked_share=parked_share)
    vacuum_analyze()
    plans = {name: explain(sql) for name, sql in sqls.items()}
    forced = explain(sqls["pick"], no_seqscan=True)
    _execute(f"UPDATE {_tq()} SET ready_at = NULL WHERE schema_name = ANY(%s)", [REAL_TENANTS])
    try:
        idle_plans = {name: explain(sql) for name, sql in sqls.items()}
        idle_server = {name: server_side_us(sql) for name, sql in sqls.items()}
    finally:
        _execute(f"UPDATE {_tq()} SET ready_at = now() WHERE schema_name = ANY(%s)", [REAL_TENANTS])
    server = {name: server_side_us(sql) for name, sql in sqls.items()}
    return {
        "tenants": count,
        "idle_rows": count - len(REAL_TENANTS),
        "parked": "2 % waiting for a backoff + 1 % paused with work"
        if parked_share
        else "2 waiting for a backoff + 2 paused with work",
        "table_before": timings.facts["table_before"],
        "table_after": timings.facts["table_after"],
        "cycles": len(timings.totals),
        "pick_us": harness.distribution(timings.parts[0]),
        "claim_attempt_us": harness.distribution(timings.parts[1]),
        "mark_idle_us": harness.distribution(timings.parts[2]),
        "seconds_until_next_wake_us": harness.distribution(timings.parts[3]),
        "cycle_us": harness.distribution(timings.totals),
        "idle_cycle_us": harness.distribution(timings.idle),
        "picks_per_tenant": dict(sorted(timings.picks.items())),
        "jobs_claimed_per_attempt": dict(sorted(timings.claimed.items())),
        "statements_per_cycle": cycle_statements(limit),
        "server_side_us": server,
        "server_side_us_when_none_ready": idle_server,
        "explain": plans,
        "explain_pick_seqscan_off": forced,
        "explain_when_none_ready": idle_plans,
    }


def server_side_sweep(counts: list[int], sqls: dict[str, str]) -> list[dict[str, Any]]:
    """In-server cost of the pick and wake queries over more table sizes, with the plan the
    planner chooses and with ``enable_seqscan = off`` (the partial-index plans)."""
    rows = []
    for count in counts:
        populate_idle(count - len(REAL_TENANTS))
        vacuum_analyze()
        row: dict[str, Any] = {"tenants": count}
        for state, ready in (("none_ready", "NULL"), ("five_ready", "now()")):
            _execute(
                f"UPDATE {_tq()} SET ready_at = {ready} WHERE schema_name = ANY(%s)",
                [REAL_TENANTS],
            )
            for name, sql in sqls.items():
                plan = explain(sql)
                chosen = server_side_us(sql)
                _execute("SET enable_seqscan = off")
                try:
                    indexed = server_side_us(sql)
                finally:
                    _execute("SET enable_seqscan = on")
                row[f"{name}_{state}"] = {
                    "plan": "seq scan" if plan["seq_scans"] else "+".join(plan["indexes_used"]),
                    "us": chosen["min"],
                    "us_seqscan_off": indexed["min"],
                }
        vacuum_analyze()  # the busy loops' picks left row versions behind
        rows.append(row)
        print(
            f"  in-server at {count:>6} tenants: pick (none ready) "
            f"{row['pick_none_ready']['us']} us [{row['pick_none_ready']['plan']}], with "
            f"enable_seqscan off {row['pick_none_ready']['us_seqscan_off']} us",
            flush=True,
        )
    _execute(f"UPDATE {_tq()} SET ready_at = now() WHERE schema_name = ANY(%s)", [REAL_TENANTS])
    return rows


def run_cycles(args: argparse.Namespace) -> dict[str, Any]:
    from orchestration import conf, dispatch

    print(f"  part 1: {PART1_JOBS} queued jobs in each of {len(REAL_TENANTS)} tenants ...")
    batches = queue_part1_work()
    # As a drain does: commits don't wait for the WAL flush unless SYNCHRONOUS_COMMIT=1.
    relax = getattr(dispatch, "_tune_worker_session", None)
    if relax is not None:
        relax()
    ((synchronous_commit,),) = _execute("SHOW synchronous_commit")
    limit = int(conf.get("CLAIM_BATCH"))
    sqls = {
        "pick": captured_sql(dispatch.pick_tenant),
        "seconds_until_next_wake": captured_sql(dispatch.seconds_until_next_wake),
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


# --- part 2: an idle tenant's job under another tenant's batch ----------------------------------


def reset_dispatch_state(part1_batches: dict[str, int], idle_rows: int) -> None:
    """Part 1's work cancelled; queue index, drain slots and q2's queue emptied; idle rows back."""
    from django_q.models import OrmQ
    from django_tenants.utils import schema_context

    from orchestration.services import batch_cancel
    from tenants.models import DrainSlot

    for schema, batch_id in part1_batches.items():
        with schema_context(schema):
            batch_cancel(batch_id=batch_id)
    _execute(f"DELETE FROM {_tq()}")
    populate_idle(idle_rows)
    vacuum_analyze()
    DrainSlot.objects.update(held_until=None, holder="")
    OrmQ.objects.all().delete()  # part 1's enqueues queued drains nobody ran


def _tq_snapshot(schemas: list[str]) -> list[dict[str, Any]]:
    from django.utils import timezone

    now = timezone.now()
    rows = _execute(
        f"""SELECT schema_name, ready_at, signal_seq, last_served_at, active_runs, paused
              FROM {_tq()} WHERE schema_name = ANY(%s) ORDER BY schema_name""",
        [schemas],
    )
    return [
        {
            "schema": s,
            "ready_at": ready,
            "signal_seq": seq,
            "last_served_ago_s": round((now - served).total_seconds(), 3) if served else None,
            "active_runs": active,
            "paused": paused,
        }
        for s, ready, seq, served, active, paused in rows
    ]


def _slots() -> list[dict[str, Any]]:
    from tenants.models import DrainSlot

    return list(DrainSlot.objects.order_by("pk").values("pk", "holder", "held_until"))


_seconds = harness.seconds_between


def run_latency(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from orchestration.models import Batch, JobRun, MarketplaceJob
    from orchestration.services import JobSpec, batch_create, job_create, tenant_pause
    from tests.engine_providers import set_faults

    reset_dispatch_state(_part1_batches(), args.idle_rows)
    faults = harness.RESULTS_DIR / f"{NAME}.faults.tmp"
    set_faults(faults, {"only": {"mode": "sleep", "seconds": args.step_seconds, "times": 10**8}})
    params = {"faults": str(faults)}

    print(f"  part 2: tenant A: a batch of {args.jobs} {MARKETPLACE}.{ACTION} jobs ...", flush=True)
    t = time.perf_counter()
    with schema_context(TENANT_A):
        big = batch_create(
            name=f"bench {args.jobs} x {ACTION}",
            jobs=[JobSpec(marketplace=MARKETPLACE, action=ACTION, params=params)] * args.jobs,
        )
    create_s = time.perf_counter() - t

    def a_runs() -> int:
        with schema_context(TENANT_A):
            return JobRun.objects.filter(job__batch_id=big.pk).count()

    def a_done() -> int:
        with schema_context(TENANT_A):
            return Batch.objects.values_list("completed_jobs", flat=True).get(pk=big.pk)

    cluster = harness.Cluster(env, harness.RESULTS_DIR / f"{NAME}.qcluster.log.tmp")
    cluster_start = timezone.now()
    cluster.start()
    samples: list[dict[str, Any]] = []
    a_done_at_end = 0
    try:
        harness.wait_for_count(
            a_runs, 20, label="tenant A runs started", cluster=cluster, timeout=args.timeout
        )
        a_done_at_first = a_done()
        first = time.monotonic()
        for i in range(args.samples):
            time.sleep(max(0.0, first + i * args.interval - time.monotonic()))
            with schema_context(TENANT_B):
                job = job_create(marketplace=MARKETPLACE, action=ACTION, params=params)
            sample: dict[str, Any] = {
                "job_id": job.pk,
                "queue_after_submit": _tq_snapshot([TENANT_A, TENANT_B]),
                "drain_slots_after_submit": _slots(),
            }
            deadline = time.monotonic() + args.timeout
            status = job.status
            while time.monotonic() < deadline and status not in ("completed", "failed"):
                if not cluster.running():
                    raise harness.BenchError(f"qcluster exited early:\n{cluster.log_tail()}")
                time.sleep(0.05)
                with schema_context(TENANT_B):
                    status = MarketplaceJob.objects.values_list("status", flat=True).get(pk=job.pk)
            sample["status"] = status
            samples.append(sample)
            print(f"  B job {i + 1}/{args.samples}: {status}", flush=True)
        a_done_at_end = a_done()
        sampling_end = timezone.now()
        with schema_context(TENANT_A):
            tenant_pause(schema_name=TENANT_A)  # drains find nothing and hand back
        harness.wait_for_count(
            lambda: 0 if _running(TENANT_A) else 1,
            1,
            label="tenant A's running jobs finished",
            cluster=cluster,
            timeout=args.timeout,
        )
    finally:
        cluster.stop()
    return analyse_latency(
        args, big.pk, samples, cluster, cluster_start, sampling_end, create_s,
        a_done_at_first, a_done_at_end,
    )  # fmt: skip


def _part1_batches() -> dict[str, int]:
    from django_tenants.utils import schema_context

    from orchestration.models import Batch

    batches = {}
    for schema in REAL_TENANTS:
        with schema_context(schema):
            batches[schema] = Batch.objects.values_list("pk", flat=True).get(name="dispatch cycles")
    return batches


def _running(schema: str) -> int:
    from django_tenants.utils import schema_context

    from orchestration.models import MarketplaceJob

    with schema_context(schema):
        return MarketplaceJob.objects.filter(status="running").count()


def analyse_latency(
    args, batch_id, samples, cluster, cluster_start, sampling_end, create_s, a_first, a_end
) -> dict[str, Any]:
    from django.db.models import Count
    from django_q.models import Task
    from django_tenants.utils import schema_context

    from orchestration import conf
    from orchestration.models import JobRun, MarketplaceJob

    with schema_context(TENANT_A):
        a_runs = list(
            JobRun.objects.filter(job__batch_id=batch_id).values_list(
                "started_at", "finished_at", "worker", "status"
            )
        )
        a_status = dict(
            MarketplaceJob.objects.filter(batch_id=batch_id)
            .values_list("status")
            .annotate(n=Count("id"))
            .order_by()
        )
    a_durations = [
        (end - start).total_seconds() * 1000 for start, end, _w, _s in a_runs if end is not None
    ]
    a_max_s = max(a_durations, default=0) / 1000
    turn = conf.get("TENANT_TURN_SECONDS")
    bound_s = round(turn + a_max_s + Q2_POLL_S, 3)

    with schema_context(TENANT_B):
        jobs = {
            j.pk: j for j in MarketplaceJob.objects.filter(pk__in=[s["job_id"] for s in samples])
        }
        runs = {r.job_id: r for r in JobRun.objects.filter(job_id__in=jobs)}
    rows = []
    for sample in samples:
        job, run = jobs[sample["job_id"]], runs.get(sample["job_id"])
        start = run.started_at if run else None
        waiting = [
            (s, w) for s, _e, w, _st in a_runs if start and job.created_at < s < start
        ]  # A runs started while B's job waited
        before_on_worker = [
            e for _s, e, w, _st in a_runs if run and w == run.worker and e and e <= start
        ]
        rows.append(
            {
                "job_id": job.pk,
                "status": job.status,
                "created_at": job.created_at,
                "run_started_at": start,
                "run_finished_at": run.finished_at if run else None,
                "completed_at": job.completed_at,
                "worker": run.worker if run else None,
                "start_latency_s": _seconds(job.created_at, start),
                "done_latency_s": _seconds(job.created_at, job.completed_at),
                "run_s": _seconds(start, run.finished_at) if run else None,
                "a_runs_started_while_waiting": len(waiting),
                "a_runs_started_while_waiting_per_worker": dict(Counter(w for _s, w in waiting)),
                "gap_after_last_a_run_on_worker_ms": (
                    round((start - max(before_on_worker)).total_seconds() * 1000, 1)
                    if before_on_worker
                    else None
                ),
                "queue_after_submit": sample["queue_after_submit"],
                "drain_slots_after_submit": sample["drain_slots_after_submit"],
            }
        )
    starts = [r["start_latency_s"] for r in rows if r["start_latency_s"] is not None]
    dones = [r["done_latency_s"] for r in rows if r["done_latency_s"] is not None]
    drains = list(
        Task.objects.filter(func="orchestration.tasks.drain")
        .order_by("stopped")
        .values_list("stopped", "result", "success")
    )
    first_a = min((s for s, _e, _w, _st in a_runs), default=None)
    a_window = _seconds(first_a, sampling_end)
    return {
        "note": (
            "latency from the B job's created_at (bench process clock) to its JobRun.started_at "
            "(reset when the first step really starts) and to the job's completed_at (worker "
            "clock; same machine). a_runs_started_while_waiting: A runs that started between "
            "B's creation and B's start, on any worker."
        ),
        "tenant_a": TENANT_A,
        "tenant_b": TENANT_B,
        "job_kind": f"{MARKETPLACE}.{ACTION}",
        "step_sleep_s": args.step_seconds,
        "a_batch_jobs": args.jobs,
        "a_batch_create_s": round(create_s, 2),
        "idle_queue_rows": args.idle_rows,
        "samples": rows,
        "start_latency_s": harness.distribution(starts, 3),
        "done_latency_s": harness.distribution(dones, 3),
        "bound": {
            "stated": (
                "docs/engine.md: at most one turn of each busy drain (TENANT_TURN_SECONDS + the "
                "duration of the job a drain is finishing) + q2's poll (0.2 s); about 2-3 s"
            ),
            "tenant_turn_s": turn,
            "a_job_max_ms": round(a_max_s * 1000, 1),
            "q2_poll_s": Q2_POLL_S,
            "bound_s": bound_s,
            "doc_estimate_s": list(DOC_ESTIMATE_S),
            "max_start_latency_s": max(starts, default=None),
            "held": bool(starts) and len(starts) == len(rows) and max(starts) <= bound_s,
            "within_doc_estimate": bool(starts) and max(starts) <= DOC_ESTIMATE_S[1],
        },
        "tenant_a_progress": {
            "completed_when_sampling_began": a_first,
            "completed_at_end_of_sampling": a_end,
            "completed_during_sampling": a_end - a_first,
            "runs_started": len(a_runs),
            "job_status_at_stop": a_status,
            "run_ms": harness.distribution(a_durations, 1),
            "first_run_s_after_cluster_start": _seconds(cluster_start, first_a),
            "window_s_first_run_to_end_of_sampling": a_window,
            "jobs_per_s": harness.rate(a_end, a_window),
        },
        "drains": {
            "tasks": len(drains),
            "results": [
                {"stopped": stopped, "success": ok, **(result if isinstance(result, dict) else {})}
                for stopped, result, ok in drains
            ],
        },
        "cluster_stop_s": round(cluster.stop_seconds or 0, 2),
        "cluster_killed": cluster.killed,
    }


# --- report -------------------------------------------------------------------------------------------


def describe_settings(args: argparse.Namespace) -> dict[str, Any]:
    from django.conf import settings

    from orchestration import conf

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
        "drain_slots": conf.drain_slots(),
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
    git = result.get("git") or {}
    if git.get("commit"):
        dirty = git.get("uncommitted_changes") or []
        lines.append(
            f"  measured: commit {git['commit'][:10]}"
            + (f" + {len(dirty)} uncommitted files outside bench/" if dirty else "")
        )
    lines += [f"  written to {path}", f"  rerun: {result['command']}"]
    print("\n".join(lines))


if __name__ == "__main__":
    try:
        main()
    except harness.BenchError as exc:
        print(f"\n[{NAME}] failed: {exc}", file=sys.stderr)
        sys.exit(1)
