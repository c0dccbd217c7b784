"""Part 1's unit: one dispatcher cycle (pick, claim, mark idle, next wake), its statements, timed."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from bench import harness
from bench.dispatch_fairness.constants import REAL_TENANTS
from bench.dispatch_fairness.setup import (
    execute,
    populate_idle,
    table_facts,
    tenant_queue_table,
    vacuum_analyze,
)


def one_cycle(limit: int) -> tuple[str, int, tuple[int, int, int, int]]:
    """pick, claim attempt (rolled back), mark_idle (stale seq: no change), next wake.

    Returns (schema, jobs claimed, nanoseconds of each part).
    """
    from django.db import transaction
    from django_tenants.utils import schema_context

    from orchestration.engine import marks
    from orchestration.engine.claims import claim_jobs

    t0 = time.perf_counter_ns()
    picked = marks.pick_tenant()
    t1 = time.perf_counter_ns()
    if picked is None:
        raise harness.BenchError("pick_tenant() found no ready tenant in part 1")
    schema, _seq = picked
    with schema_context(schema), transaction.atomic():
        claimed = len(claim_jobs(limit=limit))
        transaction.set_rollback(True)
    t2 = time.perf_counter_ns()
    marks.mark_idle(schema, -1, None)
    t3 = time.perf_counter_ns()
    marks.seconds_until_next_wake()
    t4 = time.perf_counter_ns()
    return schema, claimed, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)


def idle_cycle() -> int:
    """What a drain pays when no tenant is ready: a pick that finds none, then the wake query."""
    from orchestration.engine import marks

    t0 = time.perf_counter_ns()
    picked = marks.pick_tenant()
    marks.seconds_until_next_wake()
    elapsed = time.perf_counter_ns() - t0
    if picked is not None:
        raise harness.BenchError(f"pick_tenant() picked {picked[0]} with no tenant ready")
    return elapsed


def cycle_statements(limit: int) -> dict[str, Any]:
    """The statements of one cycle, by kind (``harness.categorize``)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    connection.queries_log.clear()
    with CaptureQueriesContext(connection) as ctx:
        one_cycle(limit)
    kinds = [harness.categorize(q["sql"]) for q in ctx.captured_queries]
    return {"count": len(kinds), "in_order": kinds}


def captured_sql(fn) -> str:
    """The (last) statement ``fn()`` sends, run in a transaction that is rolled back."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx, transaction.atomic():
        fn()
        transaction.set_rollback(True)
    statements = [
        q["sql"] for q in ctx.captured_queries if tenant_queue_table().split(".")[1] in q["sql"]
    ]
    return statements[-1]


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
    execute(
        f"UPDATE {tenant_queue_table()} SET ready_at = NULL WHERE schema_name = ANY(%s)",
        [REAL_TENANTS],
    )
    try:
        idle = [idle_cycle() / 1000 for _ in range(warmup + cycles)]
        timings.idle += idle[warmup:]
    finally:
        execute(
            f"UPDATE {tenant_queue_table()} SET ready_at = now() WHERE schema_name = ANY(%s)",
            [REAL_TENANTS],
        )
