"""Scaling (issue 17): engine steps/s as workers, clusters and tenants are added.

One fresh database; batches of ``--jobs`` ``noopmkt.noop5`` jobs (5 no-op steps each,
provider in ``tests/engine_providers.py``), durable commits (the default); every run
enqueues its batches from a ``manage.py shell`` child with the run's environment (its q2
broker), then starts its real clusters (``manage.py run_workers``: a watchdog and its
``qcluster``, as on a machine) and waits until every batch is done.
Rates from the database: ``steps_per_s_steady`` = (jobs - 1) x 5 / (first ``JobRun``
finished → last finished), as in ``engine_throughput``.

1. **Workers**: one cluster with each of ``--worker-counts`` (1, 2, 4) workers.
2. **Clusters**: two ``run_workers`` processes (standing for two machines) of
   ``--cluster-workers`` (2) each against the same database, with the ORM broker and with
   Redis (``REDIS_URL``, which moves django-q2's broker to Redis); runs per cluster (from the
   process tree that held each ``JobRun.worker`` pid) and drain tasks. Then one and two
   clusters on ``--wait-jobs`` (300) ``wait5`` jobs, whose steps wait 20 ms each (a
   marketplace call's latency, hardly any CPU): what another machine's workers add when this
   machine's 2 CPUs are not the limit.
3. **Tenants**: the busy tenant alone; the same batch with ``--tenants`` (1,000) tenants that
   have nothing to run (idle tenants must cost nothing); then every one of the 1,000 tenants
   busy with ``--jobs-per-tenant`` (2) jobs. The tenants are one ``create_tenant`` cloned in
   SQL (``tenants.py``).

Nothing here asserts on timings; the machine's load average is recorded per run.

    .venv/bin/python -m bench.scaling
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from bench import harness
from bench.scaling.cli import parse_args
from bench.scaling.constants import ACTION, NAME, SCHEMA, WAIT_ACTION
from bench.scaling.runs import create_batches, run
from bench.scaling.summary import assemble, print_summary
from bench.scaling.tenants import create_many, tenant_schemas, time_sweeps

RATE = "steps_per_s_steady"


def in_rounds(rounds: int, runs: dict[str, Callable[[], dict[str, Any]]]) -> dict[str, Any]:
    """Each run ``rounds`` times, in alternating order (reversed every other round), so a
    slow spell of this shared machine falls on several configurations rather than one.
    Each result is its median round's record (``harness.median_run``: a failed round sorts
    lowest), with every round's rate as ``rounds``."""
    records: dict[str, list[dict[str, Any]]] = {label: [] for label in runs}
    for index in range(rounds):
        order = list(runs) if index % 2 == 0 else list(reversed(runs))
        if rounds > 1:
            print(f"  round {index + 1}/{rounds}", flush=True)
        for label in order:
            records[label].append(runs[label]())
    return {
        label: {**harness.median_run(done, RATE), "rounds": [r.get(RATE) for r in done]}
        for label, done in records.items()
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    harness.install_sigterm_handler()
    started = time.perf_counter()
    machine = harness.machine_info()
    print(f"[{NAME}] {args.jobs} noop5 jobs per run, {args.rounds} round(s); workers "
          f"{args.worker_list}; 2 clusters of {args.cluster_workers}; {args.tenants} tenants")  # fmt: skip
    with harness.throwaway_database(keep=args.keep_db) as (db, embedded):
        env = harness.cluster_env(db.url, workers=2)
        env.pop("REDIS_URL", None)
        migrate_s = harness.migrate(env)
        tenant_s = harness.create_tenants([SCHEMA], env=env)[SCHEMA]
        harness.setup_django(env)
        import tests.engine_providers  # noqa: F401  (registers noopmkt in this process too)

        def one(
            label: str, schemas: list[str], jobs: int, action: str = ACTION, **kw: Any
        ) -> dict[str, Any]:
            # A run that fails is recorded as failed; the other runs' figures are kept.
            try:
                batches = create_batches(schemas, jobs, label, action)
                return {**run(args, env, db.url, label, batches=batches, **kw), "action": action}
            except Exception as exc:
                print(f"  {label}: FAILED: {exc}"[:2000], flush=True)
                return {"error": f"{type(exc).__name__}: {exc}"[:2000], "steps_per_s_steady": None,
                        "runs_per_cluster": []}  # fmt: skip

        cw = args.cluster_workers
        worker_runs = {str(n): {"workers": n} for n in args.worker_list}
        cluster_runs = {
            f"1x{cw} orm": {"workers": cw},
            f"2x{cw} orm": {"clusters": 2, "workers": cw},
            f"1x{cw} redis": {"workers": cw, "redis": True},
            f"2x{cw} redis": {"clusters": 2, "workers": cw, "redis": True},
        }
        if args.wait_jobs:
            waiting = {"action": WAIT_ACTION, "jobs": args.wait_jobs}
            cluster_runs[f"1x{cw} wait"] = {"workers": cw, **waiting}
            cluster_runs[f"2x{cw} wait"] = {"clusters": 2, "workers": cw, **waiting}
        runs = {f"workers {k}": kw for k, kw in worker_runs.items()}
        runs.update({f"clusters {k}": kw for k, kw in cluster_runs.items()})
        results = in_rounds(
            args.rounds,
            {
                label: partial(one, label, [SCHEMA], **{"jobs": args.jobs, **kw})
                for label, kw in runs.items()
            },
        )
        workers = {k: results[f"workers {k}"] for k in worker_runs}
        clusters = {k: results[f"clusters {k}"] for k in cluster_runs}
        tenants: dict[str, Any] = {}
        setup: dict[str, Any] = {
            "migrate_schemas_s": round(migrate_s, 2),
            "create_tenant_s": tenant_s,
        }
        if not args.skip_tenants:
            alone = partial(one, "tenant alone", [SCHEMA], args.jobs)
            tenants["1 tenant alone"] = in_rounds(args.rounds, {"alone": alone})["alone"]
            setup["tenants"] = create_many(args.tenants, env, db.url)
            setup["sweep"] = time_sweeps(args.tenants)  # the watchdog's slow pass, all idle
            idle = partial(one, "busy and idle", [SCHEMA], args.jobs)
            tenants[f"1 busy + {args.tenants} idle"] = in_rounds(args.rounds, {"idle": idle})[
                "idle"
            ]
            tenants[f"{args.tenants} busy"] = one(
                "all busy", tenant_schemas(args.tenants), args.jobs_per_tenant
            )
        database = harness.describe_database(embedded, db.name)

    result = assemble(args, machine, database, setup, workers, clusters, tenants)
    path = harness.finish_result(NAME, result, started=started)
    print_summary(result, path)
    return result
