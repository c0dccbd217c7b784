"""Stock planning (issue 14): the whole plan workflow on the demo history, the context
assembly alone, and 20 plans at once on a real qcluster.

One fresh database, two tenants (``plan_acme``, ``plan_globex``) with the demo CSVs of
``planning/fixtures`` (16,640 and 13,312 weekly rows). Three parts:

1. **Context assembly alone** (in this process): ``planning.selectors.category_history``
   for every category of ``plan_acme``, ``--repeats`` times each (the query and the
   series it builds: what the first step does).
2. **Whole workflow** (in this process, ``job_execute_now``: the engine's own claim, step
   thread, commits): one ``standard`` plan per category of ``plan_acme``, the four steps
   each (no marketplace listed, so the push has nothing to send); per-plan time from
   ``plan_start`` to the job completed, and all categories one after the other. Target:
   < 10 s for the demo tenant's history.
3. **20 concurrent plans** (``--plans``) with a real ``manage.py qcluster``
   (``--workers``, default 2): half per tenant, categories round-robin, all queued, then
   the cluster started; per-plan latency from the job's ``created_at`` to
   ``completed_at`` and the window until the last completes (database timestamps).

Nothing here asserts on timings. Under ``CI=true`` the sizes default small.

    .venv/bin/python -m bench.planning
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from bench import harness

NAME = "planning"
TENANTS = {"plan_acme": "acme", "plan_globex": "globex"}
TARGET_S = 10.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3 if ci else 20)
    parser.add_argument("--plans", type=int, default=6 if ci else 20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep-db", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    harness.install_sigterm_handler()
    started = time.perf_counter()
    print(f"[{NAME}] assembly x{args.repeats}, a plan per category, {args.plans} plans at once")
    with harness.throwaway_database(keep=args.keep_db) as (db, _):
        env = harness.cluster_env(db.url, workers=args.workers)
        _, migrate_s = harness.manage("migrate_schemas", "--noinput", env=env)
        tenants_s = harness.create_tenants(list(TENANTS), env=env)
        harness.setup_django(env)
        history = load_history()
        assembly = run_assembly(args)
        workflow = run_workflow()
        concurrent = run_concurrent(args, env)
    result = {
        "name": NAME,
        "at": harness.now_iso(),
        "args": vars(args),
        "machine": harness.machine_info(),
        "git": harness.git_state(),
        "setup": {
            "migrate_schemas_s": round(migrate_s, 2),
            "create_tenant_s": tenants_s,
            "history": history,
        },
        "assembly": assembly,
        "workflow": workflow,
        "concurrent": concurrent,
        "target": {
            "whole_demo_history_s": TARGET_S,
            "met": workflow["all_categories_s"] < TARGET_S,
        },
        "duration_s": round(time.perf_counter() - started, 1),
    }
    path = harness.finish_result(NAME, result)
    print(f"  assembly per category p50 {assembly['ms']['p50']} ms; workflow: "
          f"{workflow['all_categories_s']} s for {workflow['plans']} plans "
          f"(per plan p50 {workflow['per_plan_s']['p50']} s); {concurrent['plans']} at once: "
          f"last done after {concurrent['window_s']} s, latency p50 "
          f"{concurrent['latency_s']['p50']} s → {path}")  # fmt: skip
    return result


def load_history() -> dict[str, Any]:
    from django_tenants.utils import schema_context

    from planning.services import load_demo_history

    loaded = {}
    for schema, fixture in TENANTS.items():
        with schema_context(schema):
            t = time.perf_counter()
            counts = load_demo_history(fixture=fixture)
            loaded[schema] = {**counts, "seconds": round(time.perf_counter() - t, 2)}
    return loaded


def categories(schema: str) -> list[str]:
    from django_tenants.utils import schema_context

    from planning.selectors import categories as read

    with schema_context(schema):
        return read()


def run_assembly(args: argparse.Namespace) -> dict[str, Any]:
    from django_tenants.utils import schema_context

    from planning.params import next_monday
    from planning.selectors import category_history

    times, sizes = [], {}
    with schema_context("plan_acme"):
        for category in categories("plan_acme"):
            category_history(category, before=next_monday())  # warm
            for _ in range(args.repeats):
                t = time.perf_counter()
                history = category_history(category, before=next_monday())
                times.append((time.perf_counter() - t) * 1000)
            sizes[category] = {"skus": len(history["series"]), "weeks": len(history["weeks"])}
    return {"ms": harness.distribution(times, 2), "categories": sizes}


def run_workflow() -> dict[str, Any]:
    from django_tenants.utils import schema_context

    from orchestration.engine.execute import job_execute_now
    from orchestration.models import MarketplaceJob
    from planning.params import plan_parameters
    from planning.services import plan_start

    per_plan = {}
    with schema_context("plan_acme"):
        total = time.perf_counter()
        for category in categories("plan_acme"):
            t = time.perf_counter()
            job = plan_start(params=plan_parameters(preset="standard",
                                                    overrides={"category": category}))  # fmt: skip
            status = job_execute_now(job_id=job.pk)
            if status != "completed":
                error = MarketplaceJob.objects.get(pk=job.pk).error_message
                raise harness.BenchError(f"plan of {category} ended {status}: {error}")
            per_plan[category] = round(time.perf_counter() - t, 3)
        all_s = round(time.perf_counter() - total, 2)
    return {"plans": len(per_plan), "all_categories_s": all_s, "per_plan": per_plan,
            "per_plan_s": harness.distribution(list(per_plan.values()), 3)}  # fmt: skip


def run_concurrent(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    from django.db.models import Max, Min
    from django_tenants.utils import schema_context

    from orchestration.models import MarketplaceJob
    from planning.params import plan_parameters
    from planning.services import plan_start

    names = {schema: categories(schema) for schema in TENANTS}

    def queue(count: int) -> dict[str, list[int]]:
        jobs: dict[str, list[int]] = {schema: [] for schema in TENANTS}
        for i in range(count):
            schema = list(TENANTS)[i % len(TENANTS)]
            category = names[schema][(i // len(TENANTS)) % len(names[schema])]
            with schema_context(schema):
                params = plan_parameters(preset="standard", overrides={"category": category})
                jobs[schema].append(plan_start(params=params).pk)
        return jobs

    def completed(jobs: dict[str, list[int]]) -> int:
        count = 0
        for schema, ids in jobs.items():
            with schema_context(schema):
                count += MarketplaceJob.objects.filter(pk__in=ids, status="completed").count()
        return count

    log = harness.RESULTS_DIR / f"{NAME}.qcluster.log.tmp"
    with harness.Cluster(env, log) as cluster:
        # One plan per tenant first: the cluster is up and warm before the burst is queued.
        warm = queue(len(TENANTS))
        harness.wait_for_count(lambda: completed(warm), len(TENANTS), label="warm-up",
                               cluster=cluster, timeout=600)  # fmt: skip
        burst = time.perf_counter()
        jobs = queue(args.plans)
        queued_s = time.perf_counter() - burst
        harness.wait_for_count(lambda: completed(jobs), args.plans, label="plans",
                               cluster=cluster, timeout=600)  # fmt: skip
    latencies, first, last = [], None, None
    for schema, ids in jobs.items():
        with schema_context(schema):
            rows = MarketplaceJob.objects.filter(pk__in=ids)
            for created, completed in rows.values_list("created_at", "completed_at"):
                latencies.append((completed - created).total_seconds())
            span = rows.aggregate(first=Min("created_at"), last=Max("completed_at"))
            first = min(filter(None, [first, span["first"]]))
            last = max(filter(None, [last, span["last"]]))
    return {
        "plans": args.plans,
        "workers": args.workers,
        "queueing_s": round(queued_s, 2),  # creating the plans (validation, job rows)
        "window_s": round((last - first).total_seconds(), 2),  # first queued → last completed
        "latency_s": harness.distribution(latencies, 2),  # each plan: queued → completed
    }


if __name__ == "__main__":
    main()
