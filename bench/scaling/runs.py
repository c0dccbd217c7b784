"""One scaling run: batches of no-op jobs in some tenants, one or more real clusters, timed
from the database until every batch is done."""

from __future__ import annotations

import argparse
import contextlib
from collections import Counter
from typing import Any

from bench import harness
from bench.scaling.constants import ACTION, COMMAND, MARKETPLACE, NAME, STEPS_PER_JOB


def create_batches(
    schemas: list[str], jobs_per_schema: int, label: str, action: str = ACTION
) -> dict[str, int]:
    """A batch of ``jobs_per_schema`` jobs (noop5 unless ``action``) in each schema, not
    enqueued yet."""
    from django_tenants.utils import schema_context

    from orchestration.services import JobSpec, batch_create

    batches = {}
    for schema in schemas:
        with schema_context(schema):
            batches[schema] = batch_create(
                name=label,
                jobs=[JobSpec(marketplace=MARKETPLACE, action=action)] * jobs_per_schema,
                start=False,
            ).pk
    return batches


def enqueue_in_child(batches: dict[str, int]) -> None:
    """Runs in ``manage.py shell`` with the run's environment (its q2 broker: ORM or Redis)."""
    from django_tenants.utils import schema_context

    from orchestration.models import MarketplaceJob
    from orchestration.services import jobs_enqueue

    for schema, batch_id in batches.items():
        with schema_context(schema):
            ids = MarketplaceJob.objects.filter(batch_id=batch_id).values_list("pk", flat=True)
            jobs_enqueue(job_ids=list(ids))


UNION_CHUNK = 50  # schemas per statement: each table and index read takes a lock


def _union(table: str, columns: str, batches: dict[str, int], where: str) -> list[str]:
    """``SELECT columns FROM <schema>.table WHERE where`` over every schema, as statements of
    ``UNION_CHUNK`` schemas each (1,000 at once exhaust max_locks_per_transaction)."""
    items = list(batches.items())
    return [
        " UNION ALL ".join(
            f'SELECT {columns} FROM "{schema}"."{table}" WHERE {where.format(batch=pk, schema=schema)}'
            for schema, pk in items[i : i + UNION_CHUNK]
        )
        for i in range(0, len(items), UNION_CHUNK)
    ]


def _rows(conn, statements: list[str]) -> list[tuple]:
    rows: list[tuple] = []
    for sql in statements:
        rows += conn.execute(sql).fetchall()
    return rows


def _cluster_pids(group: harness.ProcessGroup, seen: dict[int, int]) -> None:
    import psutil

    for index, member in enumerate(group.members):
        if member.proc is None:
            continue
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(member.proc.pid).children(recursive=True):
                seen[child.pid] = index


def run(
    args: argparse.Namespace,
    env: dict[str, str],
    url: str,
    label: str,
    *,
    batches: dict[str, int],
    clusters: int = 1,
    workers: int = 2,
    redis: bool = False,
) -> dict[str, Any]:
    """Enqueue ``batches`` (a child with the run's broker), start ``clusters`` clusters of
    ``workers`` each (``COMMAND``: each its own watchdog, as on a machine), wait until every
    batch is done; steps/s from ``JobRun`` timestamps."""
    from django.utils import timezone
    from django_q.models import Task

    from orchestration.models import Batch, JobRun, MarketplaceJob

    run_env = dict(env, Q_WORKERS=str(workers))
    if redis:
        run_env["REDIS_URL"] = args.redis_url
    total = sum(_jobs(url, batches).values())
    print(f"  {label}: {total} jobs in {len(batches)} tenant(s), {clusters} x {workers} "
          f"workers{' (Redis)' if redis else ''} ...", flush=True)  # fmt: skip
    load_start = harness.loadavg()
    harness.manage(
        "shell", "-c",
        f"from bench.scaling.runs import enqueue_in_child; enqueue_in_child({batches!r})",
        env=run_env,
    )  # fmt: skip
    tag = label.replace(" ", "_").replace(",", "")
    group = harness.ProcessGroup(
        [
            harness.Cluster(
                run_env, harness.RESULTS_DIR / f"{NAME}.{tag}.{i}.log.tmp", argv=list(COMMAND)
            )
            for i in range(clusters)
        ]
    )
    done_sql = _union(Batch._meta.db_table, "completed_jobs AS n", batches, "id = {batch}")
    conn = harness.connect(url)
    pids: dict[int, int] = {}

    def poll() -> int:
        _cluster_pids(group, pids)
        return sum(int(row[0] or 0) for row in _rows(conn, done_sql))

    started_at = timezone.now()
    pressure = harness.cpu_pressure()
    group.start()
    try:
        harness.wait_for_count(
            poll, total, label=f"{label}: jobs done", cluster=group, timeout=args.timeout,
            interval=0.5 if len(batches) < 50 else 2.0,  # a 1,000-way UNION is not free
        )  # fmt: skip
    finally:
        pressure_pct = harness.cpu_pressure_between(pressure, harness.cpu_pressure())
        group.stop()
        conn.close()
    runs_sql = _union(
        JobRun._meta.db_table,
        "worker, started_at, finished_at",
        batches,
        f'job_id IN (SELECT id FROM "{{schema}}".{MarketplaceJob._meta.db_table} '
        "WHERE batch_id = {batch})",
    )
    figures = _figures(
        url, runs_sql, total, pids, clusters, workers, redis, started_at, load_start,
        drains=Task.objects.filter(func="orchestration.tasks.drain", stopped__gte=started_at),
    )  # fmt: skip
    figures["cpu_pressure_pct"] = pressure_pct  # PSI: share of the run some task waited for CPU
    return figures


def _jobs(url: str, batches: dict[str, int]) -> dict[str, int]:
    from orchestration.models import Batch

    sql = _union(Batch._meta.db_table, "total_jobs", batches, "id = {batch}")
    conn = harness.connect(url)
    try:
        rows = _rows(conn, sql)
    finally:
        conn.close()
    return dict(zip(batches, (r[0] for r in rows), strict=True))


def _figures(url, runs_sql, total, pids, clusters, workers, redis, started_at, load_start, *,
             drains) -> dict[str, Any]:  # fmt: skip
    conn = harness.connect(url)
    try:
        rows = _rows(conn, runs_sql)
    finally:
        conn.close()
    ends = sorted(r[2] for r in rows if r[2])
    starts = sorted(r[1] for r in rows if r[1])
    per_worker = Counter(r[0] for r in rows)
    per_cluster: Counter[int] = Counter()
    for worker, n in per_worker.items():
        pid = int(str(worker).rsplit(":", 1)[-1]) if worker else -1
        per_cluster[pids.get(pid, -1)] += n
    steady_s = harness.seconds_between(ends[0], ends[-1]) if ends else None
    wall_s = harness.seconds_between(started_at, ends[-1]) if ends else None
    results = [d for d in drains.values_list("result", flat=True) if isinstance(d, dict)]
    return {
        "jobs": total,
        "steps": total * STEPS_PER_JOB,
        "runs": len(rows),
        "clusters": clusters,
        "workers_per_cluster": workers,
        "broker": "redis" if redis else "orm",
        "steady_s": steady_s,
        "steps_per_s_steady": harness.rate((len(ends) - 1) * STEPS_PER_JOB, steady_s),
        "wall_s": wall_s,
        "steps_per_s_wall": harness.rate(total * STEPS_PER_JOB, wall_s),
        "first_run_s": harness.seconds_between(started_at, starts[0]) if starts else None,
        "runs_per_worker": sorted(per_worker.values(), reverse=True),
        "runs_per_cluster": [per_cluster.get(i, 0) for i in range(clusters)]
        + ([per_cluster[-1]] if per_cluster.get(-1) else []),
        "drain_tasks": len(results),
        "drains_per_cluster_basis": "JobRun.worker pid -> the run_workers whose process tree held it",
        "tenants_served_per_drain_max": max(
            (len(d.get("tenants", [])) for d in results), default=0
        ),
        "loadavg_start": load_start,
        "loadavg_end": harness.loadavg(),
    }
