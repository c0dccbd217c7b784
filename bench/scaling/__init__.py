"""Scaling (issue 17): engine steps/s as workers, clusters and tenants are added.

One fresh database; batches of ``--jobs`` ``noopmkt.noop5`` jobs (5 no-op steps each,
provider in ``tests/engine_providers.py``), durable commits (the default); every run
enqueues its batches from a ``manage.py shell`` child with the run's environment (its q2
broker), then starts its real ``qcluster`` processes and waits until every batch is done.
Rates from the database: ``steps_per_s_steady`` = (jobs - 1) x 5 / (first ``JobRun``
finished → last finished), as in ``engine_throughput``.

1. **Workers**: one cluster with each of ``--worker-counts`` (1, 2, 4) workers.
2. **Clusters**: two ``qcluster`` processes (standing for two machines) of
   ``--cluster-workers`` (2) each against the same database, with the ORM broker and with
   Redis (``REDIS_URL``, which moves django-q2's broker to Redis); runs per cluster (from the
   process tree that held each ``JobRun.worker`` pid) and drain tasks.
3. **Tenants**: the busy tenant alone; the same batch with ``--tenants`` (1,000) tenants that
   have nothing to run (idle tenants must cost nothing); then every one of the 1,000 tenants
   busy with ``--jobs-per-tenant`` (2) jobs. The tenants are one ``create_tenant`` cloned in
   SQL (``tenants.py``).

Nothing here asserts on timings; the machine's load average is recorded per run.

    .venv/bin/python -m bench.scaling
"""

from __future__ import annotations

import time
from typing import Any

from bench import harness
from bench.scaling.cli import parse_args
from bench.scaling.constants import NAME, SCHEMA
from bench.scaling.runs import create_batches, run
from bench.scaling.summary import assemble, print_summary
from bench.scaling.tenants import create_many, tenant_schemas


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    harness.install_sigterm_handler()
    started = time.perf_counter()
    machine = harness.machine_info()
    print(f"[{NAME}] {args.jobs} noop5 jobs per run; workers {args.worker_list}; 2 clusters of "
          f"{args.cluster_workers}; {args.tenants} tenants")  # fmt: skip
    with harness.throwaway_database(keep=args.keep_db) as (db, embedded):
        env = harness.cluster_env(db.url, workers=2)
        env.pop("REDIS_URL", None)
        migrate_s = harness.migrate(env)
        tenant_s = harness.create_tenants([SCHEMA], env=env)[SCHEMA]
        harness.setup_django(env)
        import tests.engine_providers  # noqa: F401  (registers noopmkt in this process too)

        def one(label: str, schemas: list[str], jobs: int, **kw: Any) -> dict[str, Any]:
            # A run that fails is recorded as failed; the other runs' figures are kept.
            try:
                return run(args, env, db.url, label,
                           batches=create_batches(schemas, jobs, label), **kw)  # fmt: skip
            except Exception as exc:
                print(f"  {label}: FAILED: {exc}"[:2000], flush=True)
                return {"error": f"{type(exc).__name__}: {exc}"[:2000], "steps_per_s_steady": None,
                        "runs_per_cluster": []}  # fmt: skip

        workers = {
            str(n): one(f"workers {n}", [SCHEMA], args.jobs, workers=n) for n in args.worker_list
        }
        clusters = {
            f"1x{args.cluster_workers} orm": one(
                "one cluster orm", [SCHEMA], args.jobs, workers=args.cluster_workers
            ),
            f"2x{args.cluster_workers} orm": one(
                "two clusters orm", [SCHEMA], args.jobs, clusters=2, workers=args.cluster_workers
            ),
            f"1x{args.cluster_workers} redis": one(
                "one cluster redis", [SCHEMA], args.jobs, workers=args.cluster_workers, redis=True
            ),
            f"2x{args.cluster_workers} redis": one(
                "two clusters redis",
                [SCHEMA],
                args.jobs,
                clusters=2,
                workers=args.cluster_workers,
                redis=True,
            ),
        }
        tenants: dict[str, Any] = {}
        setup: dict[str, Any] = {
            "migrate_schemas_s": round(migrate_s, 2),
            "create_tenant_s": tenant_s,
        }
        if not args.skip_tenants:
            tenants["1 tenant alone"] = one("tenant alone", [SCHEMA], args.jobs)
            setup["tenants"] = create_many(args.tenants, env, db.url)
            tenants[f"1 busy + {args.tenants} idle"] = one("busy and idle", [SCHEMA], args.jobs)
            tenants[f"{args.tenants} busy"] = one(
                "all busy", tenant_schemas(args.tenants), args.jobs_per_tenant
            )
        database = harness.describe_database(embedded, db.name)

    result = assemble(args, machine, database, setup, workers, clusters, tenants)
    path = harness.finish_result(NAME, result, started=started)
    print_summary(result, path)
    return result
