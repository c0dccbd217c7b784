"""Live admin (issue 6): step commit → browser DOM latency, and the admin lists at scale.

One fresh database and one tenant (``bench``, domain ``bench.localhost``, staff user
``staff``). Two parts:

1. **Live latency**, once per channel layer (PostgreSQL, the default; Redis with
   ``REDIS_URL``, which also moves django-q2's broker to Redis, as in production). A real
   ``uvicorn`` (``--ws websockets-sansio``) and a real ``qcluster`` (``--workers``), both
   with ``DEBUG=0``. Chromium logs in on ``/admin/login/`` and opens two pages of a batch
   of ``--jobs`` ``testmkt.five`` jobs (5 steps, each sleeping ``--step-ms`` through the
   provider's fault file): the **batch page** (live progress bar, label ``P% (done/total)``)
   and the **job list filtered to the batch** (a live status badge per job). A script
   injected before the page's own records every WebSocket message on arrival and every
   change of a badge or label (``MutationObserver``; ``Date.now()`` for comparisons with
   the database, ``performance.now()`` inside the page). A warm-up batch runs first.
   Latency per DOM update = the moment the page showed a value minus the commit-side
   database timestamp of the state it shows: a job badge ``running`` ←
   ``MarketplaceJob.started_at``, ``completed`` ← ``completed_at``; the batch label
   ``done = k`` ← the k-th smallest ``completed_at`` of the batch's jobs (the counters
   move in the same transaction). These timestamps are taken inside the transaction,
   before its commit, so each figure includes the commit (for ``running``, the whole
   claim transaction: ``started_at`` is the claim's start). Also: per committed change (the first moment the page showed
   it or a later state, so states skipped by coalescing count with their wait), database →
   WebSocket arrival, arrival → DOM, the message's own ``timestamp`` → DOM, and DOM → next
   animation frame.
2. **Admin lists at 1,000 vs 1,000,000 jobs**: the tenant's job table is filled with SQL
   (``INSERT … SELECT generate_series``: statuses, marketplaces, actions, SKUs, 90 days of
   ``created_at``, a few batches; no tasks, the lists do not read them) to
   ``--small-rows``, vacuumed and analysed, timed; then to ``--large-rows``, the same.
   Views: the job list unfiltered, filtered by status (``failed``; ``completed``, which
   shows 100 rows at both sizes), searched by SKU, the jobs of one batch, and the batch
   list; median of ``--requests`` HTTP requests each (httpx → uvicorn, session cookie
   from logging in, rounds interleaved); SQL queries per page from an in-process
   ``django.test.Client`` under ``CaptureQueriesContext``, and ``EXPLAIN (ANALYZE,
   BUFFERS)`` of each of its queries on the job and batch tables.

Nothing here asserts on timings. About 2.5 minutes.

    .venv/bin/python -m bench.live_admin
"""

from __future__ import annotations

import time
from typing import Any

from bench import harness
from bench.live_admin.admin import run_admin
from bench.live_admin.cli import parse_args
from bench.live_admin.constants import ACTION, MARKETPLACE, NAME, STEPS
from bench.live_admin.live import run_live
from bench.live_admin.setup import provision, quiet
from bench.live_admin.summary import assemble, describe_database, describe_settings, print_summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    harness.install_sigterm_handler()
    started = time.perf_counter()
    machine = harness.machine_info()
    print(
        f"[{NAME}] live: {args.jobs} x {MARKETPLACE}.{ACTION} ({STEPS} steps of "
        f"{args.step_ms:g} ms), layers {', '.join(args.layer_list)}, loads "
        f"{', '.join(args.load_list)} ({args.load_jobs} noop5 jobs, {args.load_workers} "
        f"workers); admin lists at "
        f"{args.small_rows:,} and {args.large_rows:,} jobs"
    )
    with harness.throwaway_database(keep=args.keep_db) as (db, embedded):
        env = harness.cluster_env(db.url, workers=args.workers)
        for key in ("REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE", "DJANGO_SETTINGS_MODULE"):
            env.pop(key, None)
        setup = provision(env, load=not args.skip_live and args.load_list != ["none"])
        harness.setup_django(env)
        quiet()
        import tests.engine_providers  # noqa: F401  (registers testmkt in this process too)

        live = {}
        if not args.skip_live:
            for layer in args.layer_list:
                for mode in args.load_list:
                    run = layer if mode == "none" else f"{layer}+load_{mode}"
                    live[run] = run_live(args, env, layer, mode)
        admin = None if args.skip_admin else run_admin(args, env)
        settings_used = describe_settings(args)
        database = describe_database(embedded, db.name)

    result = assemble(args, machine, database, setup, live, admin, settings_used)
    path = harness.finish_result(NAME, result, started=started)
    print_summary(result, path)
    return result
