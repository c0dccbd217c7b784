"""Bulk operations over a large filter (issue 15): what the request costs, how long each
chunk holds its locks, and jobs handled per second by a worker.

One fresh database, one tenant (``ops_bench``) with ``--jobs`` (100,000) cancelled jobs
(one step each). Then, in this process:

1. **The request**: ``operation_create`` for "retry every cancelled job" (what the admin's,
   the API's and the command's doors call: a COUNT and an insert). Also the admin's full
   POST of "Retry all matching…" through Django's test client. Target: under a second.
2. **The worker's chunks**: ``--chunks`` (10) chunks of ``OPERATIONS_CHUNK`` (200) jobs.
   A chunk holds no row lock for its length (an advisory lock keeps other workers off the
   operation); each job's rows are locked by one service call, so the mean time per job is
   the longest a row lock is held. p50/p95/max per chunk, per job, and jobs/s.

Nothing here asserts on timings. Under ``CI=true`` the sizes default small.

    .venv/bin/python -m bench.operations_bulk
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from bench import harness

NAME = "operations_bulk"
SCHEMA = "ops_bench"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2_000 if ci else 100_000)
    parser.add_argument("--chunks", type=int, default=5 if ci else 10)
    parser.add_argument("--keep-db", action="store_true")
    return parser.parse_args(argv)


def _make_jobs(n: int) -> float:
    """``n`` cancelled one-step jobs, in batches of 5,000 (setup, not measured)."""
    from orchestration.models import MarketplaceJob
    from orchestration.services import JobSpec, batch_create, jobs_cancel
    from tests.engine_providers import MARKETPLACE

    started = time.perf_counter()
    made = 0
    progress = harness.Progress("jobs", n)
    while made < n:
        size = min(5_000, n - made)
        batch = batch_create(
            name=f"bench {made}", start=False,
            jobs=[JobSpec(marketplace=MARKETPLACE, action="one") for _ in range(size)],
        )  # fmt: skip
        jobs_cancel(queryset=MarketplaceJob.objects.filter(batch=batch))
        made += size
        progress.update(made)
    progress.close()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    harness.install_sigterm_handler()
    started = time.perf_counter()
    print(f"[{NAME}] {args.jobs} cancelled jobs; retry them all as an operation")
    with harness.throwaway_database(keep=args.keep_db) as (db, _):
        env = harness.cluster_env(db.url, workers=1)
        migrate_s = harness.migrate(env)
        harness.create_tenants([SCHEMA], env=env)
        harness.setup_django(env)
        from django.test import Client
        from django_tenants.utils import schema_context

        import tests.engine_providers  # noqa: F401  (registers testmkt)
        from audit.services import Actor
        from operations import services
        from operations.models import Operation
        from tests.factories import UserFactory

        with schema_context(SCHEMA):
            setup_s = _make_jobs(args.jobs)
            actor = Actor("bench", "command")
            t = time.perf_counter()
            operation = services.operation_create(
                kind="retry", job_filter={"status": ["cancelled"]}, actor=actor
            )
            create_s = time.perf_counter() - t
            # The admin's door: the confirmation page (counts) and the POST.
            user = UserFactory(username="bench-admin")
            client = Client(HTTP_HOST=f"{SCHEMA.replace('_', '-')}.localhost")
            client.force_login(user)
            url = "/admin/orchestration/marketplacejob/bulk/retry/"
            query = "status__exact=cancelled"
            t = time.perf_counter()
            page = client.get(url, {"_changelist_filters": query})
            confirm_s = time.perf_counter() - t
            t = time.perf_counter()
            posted = client.post(url, {"confirm": "1", "_changelist_filters": query})
            post_s = time.perf_counter() - t
            if page.status_code != 200 or posted.status_code != 302:
                raise harness.BenchError(
                    f"admin answered {page.status_code} / {posted.status_code}"
                )
            chunk_s: list[float] = []
            for _ in range(args.chunks):
                t = time.perf_counter()
                more = services.operation_run_chunk(operation_id=operation.pk)
                chunk_s.append(time.perf_counter() - t)
                if not more:
                    break
            operation = Operation.objects.get(pk=operation.pk)
            handled = operation.processed
    chunk_sorted = sorted(chunk_s)
    result = {
        "name": NAME,
        "when": harness.now_iso(),
        "machine": harness.machine_info(),
        "git": harness.git_state(),
        "settings": {"jobs": args.jobs, "chunk_jobs": services.CHUNK, "chunks": args.chunks},
        "setup": {"migrate_s": round(migrate_s, 1), "make_jobs_s": round(setup_s, 1)},
        "request": {
            "operation_create_s": round(create_s, 3),
            "admin_confirm_page_s": round(confirm_s, 3),
            "admin_post_s": round(post_s, 3),
            "total_matched": operation.total,
        },
        "worker": {
            "chunks": len(chunk_s),
            "jobs_handled": handled,
            "chunk_ms": harness.distribution([c * 1000 for c in chunk_sorted], digits=1),
            "per_job_ms_mean": round(1000 * sum(chunk_s) / handled, 2) if handled else None,
            "jobs_per_s": harness.rate(handled, sum(chunk_s)),
            "estimated_total_s": round(args.jobs / (handled / sum(chunk_s)), 0)
            if handled
            else None,
        },
        "duration_s": round(time.perf_counter() - started, 1),
    }
    path = harness.finish_result(NAME, result)
    r, w = result["request"], result["worker"]
    print(
        f"  request: create {r['operation_create_s']} s, confirm page {r['admin_confirm_page_s']} s, "
        f"POST {r['admin_post_s']} s over {r['total_matched']} jobs\n"
        f"  worker: {w['jobs_handled']} jobs in {w['chunks']} chunks, chunk p50 "
        f"{w['chunk_ms'].get('p50')} ms, {w['per_job_ms_mean']} ms per job (its row locks), "
        f"{w['jobs_per_s']} jobs/s\n"
        f"  → {path}"
    )
    return result


if __name__ == "__main__":
    main()
