"""Part 1's query plans: ``EXPLAIN`` of the pick and wake queries, and their in-server timing."""

from __future__ import annotations

import re
import time
from typing import Any

from bench import harness
from bench.dispatch_fairness.constants import REAL_TENANTS
from bench.dispatch_fairness.cycle import Timings, cycle_statements
from bench.dispatch_fairness.setup import execute, populate_idle, tenant_queue_table, vacuum_analyze

_INDEX = re.compile(
    r"(Index Only Scan|Index Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\w+)"
)


_SEQ = re.compile(r"Seq Scan on (\w+)")


_EXEC = re.compile(r"Execution Time: ([\d.]+) ms")


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
                execute("SET LOCAL enable_seqscan = off")
            lines = [row[0] for row in execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")]
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


def describe(count: int, timings: Timings, limit: int, sqls: dict[str, str], parked_share: bool):
    """The pooled figures of one table size, with plans and one cycle's statements."""
    populate_idle(count - len(REAL_TENANTS), parked_share=parked_share)
    vacuum_analyze()
    plans = {name: explain(sql) for name, sql in sqls.items()}
    forced = explain(sqls["pick"], no_seqscan=True)
    execute(
        f"UPDATE {tenant_queue_table()} SET ready_at = NULL WHERE schema_name = ANY(%s)",
        [REAL_TENANTS],
    )
    try:
        idle_plans = {name: explain(sql) for name, sql in sqls.items()}
        idle_server = {name: server_side_us(sql) for name, sql in sqls.items()}
    finally:
        execute(
            f"UPDATE {tenant_queue_table()} SET ready_at = now() WHERE schema_name = ANY(%s)",
            [REAL_TENANTS],
        )
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
            execute(
                f"UPDATE {tenant_queue_table()} SET ready_at = {ready} WHERE schema_name = ANY(%s)",
                [REAL_TENANTS],
            )
            for name, sql in sqls.items():
                plan = explain(sql)
                chosen = server_side_us(sql)
                execute("SET enable_seqscan = off")
                try:
                    indexed = server_side_us(sql)
                finally:
                    execute("SET enable_seqscan = on")
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
    execute(
        f"UPDATE {tenant_queue_table()} SET ready_at = now() WHERE schema_name = ANY(%s)",
        [REAL_TENANTS],
    )
    return rows
