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

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench import harness

NAME = "live_admin"
SCHEMA = "bench"
DOMAIN = "bench.localhost"
USERNAME, PASSWORD = "staff", "bench-staff-password"
MARKETPLACE, ACTION, STEPS = "testmkt", "five", 5
WARMUP_ACTION = "one"
REDIS_URL = "redis://127.0.0.1:6379/5"
TARGET_P95_MS = 100.0
TARGET_RATIO = 2.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SEARCH_SKU = "SKU-0000900"  # row 900: in both sizes (SKUs repeat every 200,000 rows)
STATUS_FILTER = "failed"

# Runs in every page before its own scripts: records WebSocket messages on arrival (a
# listener added in the constructor fires before live.js's ``onmessage``) and every change
# of a live badge, label or count (the observer's callback runs right after the handler
# that changed the DOM, so the last message recorded is the one that caused the change).
INSTRUMENT = """
(() => {
  const B = window.__bench = { ws: [], dom: [], visibility: document.visibilityState };
  const Native = window.WebSocket;
  class Recorded extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        const t = Date.now(), p = performance.now();
        let m;
        try { m = JSON.parse(event.data); } catch (err) { return; }
        B.ws.push({ t, p, type: m.type, of: m.of || null, ts: m.timestamp || null,
                    job: m.job_id || null, batch: m.batch_id || null, status: m.status || null,
                    done: m.progress ? m.progress.done : null });
      });
    }
  }
  window.WebSocket = Recorded;
  function keyOf(el) {
    if (el.dataset.liveJob) { return "job:" + el.dataset.liveJob; }
    if (el.classList.contains("live-label")) {
      const root = el.closest("[data-live-batch]");
      return root ? "label:" + root.dataset.liveBatch : null;
    }
    if (el.dataset.count) {
      const root = el.closest("[data-live-batch-counts]");
      return root ? "count:" + root.dataset.liveBatchCounts + ":" + el.dataset.count : null;
    }
    return null;
  }
  const shown = new Map();
  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-live-job], .live-label, [data-count]").forEach((el) => {
      const key = keyOf(el);
      if (key) { shown.set(key, el.textContent); }
    });
    new MutationObserver((mutations) => {
      const t = Date.now(), p = performance.now();
      const done = new Set(), fresh = [];
      for (const mutation of mutations) {
        const el = mutation.target.nodeType === 1 ? mutation.target : mutation.target.parentElement;
        if (!el || done.has(el)) { continue; }
        done.add(el);
        const key = keyOf(el);
        if (!key || shown.get(key) === el.textContent) { continue; }
        shown.set(key, el.textContent);
        const record = { t, p, key, value: el.textContent, ws: B.ws.length - 1, frame: null };
        B.dom.push(record);
        fresh.push(record);
      }
      if (fresh.length) {
        requestAnimationFrame(() => { const f = performance.now(); fresh.forEach((r) => { r.frame = f; }); });
      }
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
})();
"""

LABEL = re.compile(r"(\d+)% \((\d+)/(\d+)\)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m bench.{NAME}",
        description="Live admin: step commit -> DOM latency; admin lists at 1k vs 1M jobs.",
    )
    parser.add_argument("--jobs", type=int, default=100, help="jobs in the watched batch (<= 100)")
    parser.add_argument("--step-ms", type=float, default=50, help="sleep per step (ms)")
    parser.add_argument(
        "--warmup-jobs",
        type=int,
        default=24,
        help="1-step jobs run first (3 claims of 8: every worker process sends once)",
    )
    parser.add_argument("--layers", default="postgres,redis", help="postgres,redis (or one)")
    parser.add_argument("--redis-url", default=REDIS_URL, help="REDIS_URL of the redis run")
    parser.add_argument("--workers", type=int, default=2, help="qcluster workers (Q_WORKERS)")
    parser.add_argument("--small-rows", type=int, default=1_000, help="jobs in the small table")
    parser.add_argument("--large-rows", type=int, default=1_000_000, help="jobs in the large one")
    parser.add_argument("--requests", type=int, default=10, help="timed requests per view")
    parser.add_argument("--timeout", type=float, default=180, help="liveness bound (seconds)")
    parser.add_argument("--skip-live", action="store_true", help="only the admin lists")
    parser.add_argument("--skip-admin", action="store_true", help="only the live latency")
    parser.add_argument("--keep-db", action="store_true", help="leave the bench database")
    args = parser.parse_args(argv)
    args.jobs = max(1, min(args.jobs, 100))  # one list page shows 100 rows
    args.layer_list = [x.strip() for x in args.layers.split(",") if x.strip()]
    for layer in args.layer_list:
        if layer not in ("postgres", "redis"):
            parser.error(f"unknown layer {layer!r}")
    return args


def command_line(args: argparse.Namespace) -> str:
    return (
        f".venv/bin/python -m bench.{NAME} --jobs {args.jobs} --step-ms {args.step_ms:g} "
        f"--layers {','.join(args.layer_list)} --workers {args.workers} "
        f"--small-rows {args.small_rows} --large-rows {args.large_rows} --requests {args.requests}"
        + (" --skip-live" if args.skip_live else "")
        + (" --skip-admin" if args.skip_admin else "")
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    harness.install_sigterm_handler()
    started = time.perf_counter()
    machine = harness.machine_info()
    server, embedded = harness.server_url()
    print(
        f"[{NAME}] live: {args.jobs} x {MARKETPLACE}.{ACTION} ({STEPS} steps of "
        f"{args.step_ms:g} ms), layers {', '.join(args.layer_list)}; admin lists at "
        f"{args.small_rows:,} and {args.large_rows:,} jobs"
    )
    db = harness.BenchDatabase(server)
    with db:
        db.keep = args.keep_db
        harness.announce_database(db, server, embedded)
        env = harness.cluster_env(db.url, workers=args.workers)
        for key in ("REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE", "DJANGO_SETTINGS_MODULE"):
            env.pop(key, None)
        setup = provision(env)
        harness.setup_django(env)
        quiet()
        import tests.engine_providers  # noqa: F401  (registers testmkt in this process too)

        live = {}
        if not args.skip_live:
            for layer in args.layer_list:
                live[layer] = run_live(args, env, layer)
        admin = None if args.skip_admin else run_admin(args, env)
        settings_used = describe_settings(args)
        database = describe_database(embedded, db.name)

    result = assemble(args, machine, database, setup, live, admin, settings_used)
    result["duration_s"] = round(time.perf_counter() - started, 1)
    result["machine"]["loadavg_at_end"] = harness.loadavg()
    path = harness.write_result(NAME, result)
    print_summary(result, path)
    return result


def quiet() -> None:
    import logging
    import warnings

    logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per request
    # WhiteNoise serves from the finders; STATIC_ROOT is never collected here.
    warnings.filterwarnings("ignore", message="No directory at")


def provision(env: dict[str, str]) -> dict[str, float]:
    migrate_s = harness.migrate(env)
    tenant_s = harness.create_tenant_with_staff(
        SCHEMA, DOMAIN, username=USERNAME, password=PASSWORD, env=env
    )
    print(f"  migrated in {migrate_s:.1f}s, tenant '{SCHEMA}' with staff in {tenant_s:.1f}s")
    return {"migrate_schemas_s": round(migrate_s, 2), "create_tenant_s": tenant_s}


# --- part 1: live latency -------------------------------------------------------------------


def enqueue_in_child(schema: str, warmup_id: int, batch_id: int, timeout: float) -> None:
    """Runs in ``manage.py shell`` with the layer's environment (so the q2 broker and the
    channel layer are the server's): the warm-up batch, wait for it, then the watched one."""
    from django_tenants.utils import schema_context

    from orchestration import live
    from orchestration.models import Batch, MarketplaceJob
    from orchestration.services import jobs_enqueue
    from orchestration.states import BATCH_TERMINAL

    with schema_context(schema):
        for pk in (warmup_id, batch_id):
            ids = list(MarketplaceJob.objects.filter(batch_id=pk).values_list("pk", flat=True))
            jobs_enqueue(job_ids=ids)
            if pk == batch_id:
                break
            deadline = time.monotonic() + timeout
            while Batch.objects.get(pk=pk).status not in BATCH_TERMINAL:
                if time.monotonic() > deadline:
                    raise SystemExit(f"warm-up batch {pk} did not finish in {timeout:.0f}s")
                time.sleep(0.1)
            time.sleep(1.0)  # its last messages out of the way
    live.flush()


def run_live(args: argparse.Namespace, env: dict[str, str], layer: str) -> dict[str, Any]:
    from django.db.models import Count
    from django_tenants.utils import schema_context
    from playwright.sync_api import sync_playwright

    from orchestration.models import Batch, JobRun, MarketplaceJob
    from orchestration.services import JobSpec, batch_create
    from orchestration.states import BATCH_TERMINAL
    from tests.engine_providers import set_faults

    layer_env = dict(env)
    if layer == "redis":
        layer_env["REDIS_URL"] = args.redis_url
    print(f"  live [{layer}]: uvicorn + qcluster ({args.workers} workers) + Chromium ...")
    faults = harness.RESULTS_DIR / f"{NAME}.{layer}.faults.tmp"
    seconds = args.step_ms / 1000
    set_faults(faults, {f"step{i}": {"mode": "sleep", "times": args.jobs, "seconds": seconds}
                        for i in range(1, STEPS + 1)})  # fmt: skip
    with schema_context(SCHEMA):
        warmup = batch_create(
            name=f"warm-up {layer}",
            jobs=[JobSpec(marketplace=MARKETPLACE, action=WARMUP_ACTION)] * args.warmup_jobs,
            start=False,
        )
        batch = batch_create(
            name=f"live {layer}",
            jobs=[
                JobSpec(
                    marketplace=MARKETPLACE,
                    action=ACTION,
                    sku=f"LIVE-{layer}-{i:03d}",
                    params={"faults": str(faults)},
                )
                for i in range(args.jobs)
            ],
            start=False,
        )
    server = harness.AsgiServer(
        layer_env, harness.RESULTS_DIR / f"{NAME}.{layer}.uvicorn.log.tmp", host=DOMAIN
    )
    cluster = harness.Cluster(layer_env, harness.RESULTS_DIR / f"{NAME}.{layer}.qcluster.log.tmp")
    child = None
    pages: dict[str, dict] = {}
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop on this thread
    try:
        server.start()
        cluster.start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                # One context (one window) per page: a page in a background tab gets its
                # animation frames throttled; each page here is the only tab of its window.
                contexts = []
                opened = {}
                for name, path in (
                    ("batch_page", f"/admin/orchestration/batch/{batch.pk}/change/"),
                    ("job_list", f"/admin/orchestration/marketplacejob/?batch={batch.pk}"),
                ):
                    context = browser.new_context()
                    contexts.append(context)
                    context.add_init_script(INSTRUMENT)
                    page = context.new_page()
                    page.set_default_timeout(30_000)
                    page.goto(server.url(f"/admin/login/?next={quote(path)}"))
                    page.fill("#id_username", USERNAME)
                    page.fill("#id_password", PASSWORD)
                    page.click("input[type=submit]")
                    page.wait_for_url(lambda url, path=path: url.endswith(path))
                    page.wait_for_function(
                        "() => window.__bench && window.__bench.ws.some(m => m.type === 'snapshot')"
                    )
                    opened[name] = page
                child = subprocess.Popen(
                    [sys.executable, "manage.py", "shell", "-c",
                     f"from bench.live_admin import enqueue_in_child; "
                     f"enqueue_in_child({SCHEMA!r}, {warmup.pk}, {batch.pk}, {args.timeout})"],
                    cwd=harness.BASE_DIR, env=layer_env, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, text=True,
                )  # fmt: skip
                deadline = time.monotonic() + args.timeout * 2
                progress = harness.Progress(f"[{layer}] watched batch jobs done", args.jobs)
                try:
                    while True:
                        with schema_context(SCHEMA):
                            current = Batch.objects.get(pk=batch.pk)
                        progress.update(current.done_jobs)
                        if current.status in BATCH_TERMINAL:
                            break
                        if not cluster.running() or time.monotonic() > deadline:
                            raise harness.BenchError(
                                f"[{layer}] batch {batch.pk} at {current.done_jobs}/{args.jobs} "
                                f"(cluster running: {cluster.running()}); log "
                                f"{cluster.log_path}:\n{cluster.log_tail()}"
                            )
                        if child.poll() not in (None, 0):
                            raise harness.BenchError(f"enqueue failed:\n{child.stdout.read()}")
                        time.sleep(0.2)
                finally:
                    progress.close()
                time.sleep(1.5)  # the last messages reach the pages
                for name, page in opened.items():
                    pages[name] = page.evaluate("window.__bench")
                    pages[name]["final_text"] = page.evaluate(
                        "() => Array.from(document.querySelectorAll('.live-label'))"
                        ".map(e => e.textContent)"
                    )
                for context in contexts:
                    context.close()
            finally:
                browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=30)
            if child.poll() is None:
                child.kill()
        cluster.stop()
        server.stop()
        faults.unlink(missing_ok=True)

    with schema_context(SCHEMA):
        batch.refresh_from_db()
        rows = list(
            MarketplaceJob.objects.filter(batch_id=batch.pk).values_list(
                "pk", "status", "started_at", "completed_at"
            )
        )
        runs_per_worker = {
            label: sorted(
                JobRun.objects.filter(job__batch_id=pk)
                .values("worker")
                .annotate(n=Count("id"))
                .order_by()
                .values_list("n", flat=True),
                reverse=True,
            )
            for label, pk in (("warmup", warmup.pk), ("watched", batch.pk))
        }
    analysis = analyse(pages, rows)
    first_start = min((r[2] for r in rows if r[2]), default=None)
    analysis["batch"] = {
        "id": batch.pk,
        "jobs": args.jobs,
        "status": batch.status,
        "steps_per_job": STEPS,
        "step_sleep_ms": args.step_ms,
        "first_job_started_to_batch_completed_s": (
            round((batch.completed_at - first_start).total_seconds(), 2)
            if batch.completed_at and first_start
            else None
        ),
        "warmup_jobs": args.warmup_jobs,
        "runs_per_worker": runs_per_worker,
    }
    analysis["layer"] = layer
    analysis["q2_broker"] = "redis" if layer == "redis" else "orm (PostgreSQL)"
    analysis["uvicorn"] = " ".join(["uvicorn", *server.argv[3:]])
    analysis["page_visibility"] = {k: v.get("visibility") for k, v in pages.items()}
    analysis["final_label"] = pages.get("batch_page", {}).get("final_text")
    dist = analysis["commit_to_dom_ms"]["all"]
    print(
        f"  live [{layer}]: commit -> DOM p50 {dist.get('p50')} / p95 {dist.get('p95')} / "
        f"p99 {dist.get('p99')} ms over {dist.get('count')} updates"
    )
    return analysis


def _ms(value: datetime | None) -> float | None:
    return value.timestamp() * 1000 if value else None


def _iso_ms(text: str | None) -> float | None:
    if not text:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text).timestamp() * 1000
    return None


def analyse(pages: dict[str, dict], rows: list[tuple]) -> dict[str, Any]:
    """Per DOM update and per committed change, from the pages' records and the job rows."""
    started = {pk: _ms(s) for pk, _, s, _ in rows}
    completed = {pk: _ms(c) for pk, _, _, c in rows}
    completions = sorted(c for c in completed.values() if c is not None)
    series: dict[str, dict[str, list[float]]] = {}
    samples: list[dict[str, Any]] = []

    def add(source: str, figure: str, value: float | None) -> None:
        if value is not None:
            series.setdefault(figure, {}).setdefault(source, []).append(value)

    shown_jobs: dict[int, list[tuple[float, str]]] = {}
    shown_done: list[tuple[float, int]] = []
    messages: dict[str, dict[str, int]] = {}
    for name, record in pages.items():
        ws = record.get("ws", [])
        counts: dict[str, int] = {}
        for m in ws:
            counts[m["type"]] = counts.get(m["type"], 0) + 1
        messages[name] = counts
        for dom in record.get("dom", []):
            key, value = dom["key"], dom["value"].strip()
            msg = ws[dom["ws"]] if 0 <= dom["ws"] < len(ws) else None
            db_ms = None
            if name == "job_list" and key.startswith("job:"):
                pk = int(key.split(":")[1])
                shown_jobs.setdefault(pk, []).append((dom["t"], value))
                source = f"job_{value}"
                db_ms = {"running": started.get(pk), "completed": completed.get(pk)}.get(value)
                if value == "queued":
                    add("job_queued", "event_to_dom_ms", _event_delay(dom, msg))
            elif name == "batch_page" and key.startswith("label:"):
                source = "batch_progress"
                match = LABEL.search(value)
                done = int(match.group(2)) if match else 0
                if done <= 0:
                    continue
                shown_done.append((dom["t"], done))
                db_ms = completions[done - 1] if done <= len(completions) else None
            else:
                continue
            if db_ms is None:
                continue
            sample = {
                "source": source,
                "shown": f"{key} = {value}",
                "at_ms": dom["t"],
                "commit_to_dom_ms": dom["t"] - db_ms,
                "event_to_dom_ms": _event_delay(dom, msg),
                "commit_to_ws_ms": msg["t"] - db_ms if msg else None,
                "ws_to_dom_ms": dom["p"] - msg["p"] if msg else None,
                "dom_to_next_frame_ms": dom["frame"] - dom["p"] if dom.get("frame") else None,
                "message": msg["type"] if msg else None,
            }
            samples.append(sample)
            for figure, value_ms in sample.items():
                if figure.endswith("_ms") and figure != "at_ms":
                    add(source, figure, value_ms)

    # Per committed change: when did the page first show it (or a later state)?
    order = {"queued": 0, "running": 1, "completed": 2}
    unseen = 0
    for pk in started:
        seen = sorted(shown_jobs.get(pk, []))
        for state, db_ms in (("running", started[pk]), ("completed", completed[pk])):
            if db_ms is None:
                continue
            first = next((t for t, v in seen if order.get(v, -1) >= order[state]), None)
            if first is None:
                unseen += 1
            else:
                add(f"job_{state}", "commit_to_first_shown_ms", first - db_ms)
    shown_done.sort()
    for k, db_ms in enumerate(completions, start=1):
        first = next((t for t, d in shown_done if d >= k), None)
        if first is None:
            unseen += 1
        else:
            add("batch_progress", "commit_to_first_shown_ms", first - db_ms)

    out: dict[str, Any] = {}
    for figure, by_source in series.items():
        out[figure] = {source: harness.distribution(values) for source, values in by_source.items()}
        every = [v for source, values in by_source.items() if source != "job_queued"
                 for v in values]  # fmt: skip
        if every:
            out[figure]["all"] = harness.distribution(every)
    for figure in ("commit_to_dom_ms", "commit_to_first_shown_ms"):
        out.setdefault(figure, {}).setdefault("all", {"count": 0})
    origin = min((x["at_ms"] for x in samples), default=0)
    worst = sorted(samples, key=lambda x: -x["commit_to_dom_ms"])[:10]
    out["slowest_updates"] = [
        {k: (round(v, 1) if isinstance(v, float) else v) for k, v in x.items() if k != "at_ms"}
        | {"s_after_first_update": round((x["at_ms"] - origin) / 1000, 2)}
        for x in worst
    ]
    out["messages_received"] = messages
    out["changes_never_shown"] = unseen
    out["batch_values_shown"] = len(shown_done)
    out["batch_completions"] = len(completions)
    all_dom = out["commit_to_dom_ms"]["all"]
    out["target_p95_ms"] = TARGET_P95_MS
    out["target_met"] = bool(all_dom.get("count") and all_dom["p95"] <= TARGET_P95_MS)
    return out


def _event_delay(dom: dict, msg: dict | None) -> float | None:
    stamp = _iso_ms(msg.get("ts")) if msg else None
    return dom["t"] - stamp if stamp is not None else None


# --- part 2: admin lists at scale --------------------------------------------------------------

FILL_BATCHES = 5
MARKETPLACES = ("ebay", "etsy", "vinted")
ACTIONS = ("publish", "update", "update", "sync", "unpublish", "import")
# Out of 100: completed 86, failed 5, queued 3, pending 2, cancelled 2, retrying 1, skipped 1.
STATUS_SQL = """CASE WHEN h < 86 THEN 'completed' WHEN h < 91 THEN 'failed' WHEN h < 94 THEN 'queued'
  WHEN h < 96 THEN 'pending' WHEN h < 98 THEN 'cancelled' WHEN h < 99 THEN 'retrying'
  ELSE 'skipped' END"""

FILL_SQL = """
INSERT INTO orchestration_marketplacejob (
    batch_id, sequence, product_id, sku, marketplace, resource_key, action, params, status,
    priority, direct, max_retries, retry_count, run_after, cancel_requested, error_message,
    result, current_run_id, created_at, started_at, completed_at, updated_at, concurrency_key)
SELECT CASE WHEN g %% 5 = 0 THEN NULL ELSE (%(batches)s::bigint[])[1 + g %% %(nbatches)s] END,
       g %% 1000, NULL, 'SKU-' || lpad((g %% 200000)::text, 7, '0'),
       (%(marketplaces)s::text[])[1 + g %% %(nmarkets)s],
       (%(marketplaces)s::text[])[1 + g %% %(nmarkets)s],
       (%(actions)s::text[])[1 + (g / 7) %% %(nactions)s], '{}'::jsonb, s.status, 0, false, 3,
       CASE WHEN s.status IN ('failed', 'retrying') THEN 1 ELSE 0 END, c.at, false,
       CASE WHEN s.status = 'failed' THEN 'HTTP 400: invalid field in step' || (1 + g %% 5) ELSE '' END,
       NULL, NULL, c.at,
       CASE WHEN s.status NOT IN ('pending', 'queued') THEN c.at + interval '2 seconds' END,
       CASE WHEN s.status IN ('completed', 'failed', 'cancelled', 'skipped')
            THEN c.at + interval '9 seconds' END,
       c.at, ''
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
 CROSS JOIN LATERAL (SELECT (g * 7919) %% 100 AS h) AS r
 CROSS JOIN LATERAL (SELECT {status} AS status) AS s
 CROSS JOIN LATERAL (SELECT now() - interval '1 hour'
                            - interval '90 days' * (1 - g::float8 / %(span)s) AS at) AS c
"""

BATCH_COUNTERS_SQL = """
UPDATE orchestration_batch AS b
   SET total_jobs = s.total, completed_jobs = s.completed, failed_jobs = s.failed,
       cancelled_jobs = s.cancelled, skipped_jobs = s.skipped,
       status = CASE WHEN s.completed + s.failed + s.cancelled + s.skipped < s.total
                     THEN 'running' ELSE 'partial' END
  FROM (SELECT batch_id, count(*) AS total,
               count(*) FILTER (WHERE status = 'completed') AS completed,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
               count(*) FILTER (WHERE status = 'skipped') AS skipped
          FROM orchestration_marketplacejob WHERE batch_id = ANY(%(batches)s) GROUP BY batch_id) AS s
 WHERE b.id = s.batch_id
"""


def _tenant_cursor():
    from django.db import connection

    connection.set_schema(SCHEMA)
    return connection.cursor()


def fill_jobs(target: int, span: int, batches: list[int]) -> dict[str, Any]:
    """Insert rows until the job table holds ``target``; then the batches' counters and
    ``VACUUM (ANALYZE)`` (statistics, visibility map; no autovacuum during the timings)."""
    from django.db import connection, transaction

    with _tenant_cursor() as cursor:
        cursor.execute("SELECT count(*) FROM orchestration_marketplacejob")
        current = cursor.fetchone()[0]
    added = max(0, target - current)
    t = time.perf_counter()
    if added:
        with transaction.atomic(), _tenant_cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO off")
            cursor.execute(
                FILL_SQL.replace("{status}", STATUS_SQL),
                {"batches": batches, "nbatches": len(batches), "marketplaces": list(MARKETPLACES),
                 "nmarkets": len(MARKETPLACES), "actions": list(ACTIONS),
                 "nactions": len(ACTIONS), "first": current + 1, "last": target, "span": span},
            )  # fmt: skip
            cursor.execute(BATCH_COUNTERS_SQL, {"batches": batches})
    insert_s = time.perf_counter() - t
    t = time.perf_counter()
    with _tenant_cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) orchestration_marketplacejob")
        cursor.execute("VACUUM (ANALYZE) orchestration_batch")
        cursor.execute(
            "SELECT status, count(*) FROM orchestration_marketplacejob GROUP BY 1 ORDER BY 2 DESC"
        )
        statuses = dict(cursor.fetchall())
        cursor.execute("SELECT count(*) FROM orchestration_batch")
        batch_count = cursor.fetchone()[0]
    analyze_s = time.perf_counter() - t
    connection.set_schema_to_public()
    return {
        "rows": sum(statuses.values()),
        "inserted": added,
        "insert_s": round(insert_s, 2),
        "vacuum_analyze_s": round(analyze_s, 2),
        "statuses": statuses,
        "batches": batch_count,
    }


def autovacuum_workers() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' "
            "AND datname = current_database()"
        )
        return int(cursor.fetchone()[0])


def filler_batches() -> list[int]:
    from django_tenants.utils import schema_context

    from orchestration.models import Batch

    with schema_context(SCHEMA):
        made = Batch.objects.bulk_create(
            Batch(name=f"catalogue sync {i}", status="running", created_by="bench")
            for i in range(1, FILL_BATCHES + 1)
        )
    return [b.pk for b in made]


def views(batch_id: int) -> dict[str, str]:
    jobs = "/admin/orchestration/marketplacejob/"
    return {
        "jobs": jobs,
        "jobs_by_status": f"{jobs}?status__exact={STATUS_FILTER}",
        "jobs_completed": f"{jobs}?status__exact=completed",
        "jobs_search_sku": f"{jobs}?q={SEARCH_SKU}",
        "jobs_of_batch": f"{jobs}?batch={batch_id}",
        "batches": "/admin/orchestration/batch/",
    }


def http_login(server: harness.AsgiServer) -> dict[str, str]:
    """Log in through the admin's form; returns the cookies (session, CSRF)."""
    import httpx

    headers = {"Host": f"{server.host}:{server.port}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", headers=headers) as client:
        page = client.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if not token:
            raise harness.BenchError("no CSRF token on the login page")
        answer = client.post(
            "/admin/login/?next=/admin/",
            data={"csrfmiddlewaretoken": token.group(1), "username": USERNAME,
                  "password": PASSWORD, "next": "/admin/"},
            headers={"Referer": server.url("/admin/login/")},
        )  # fmt: skip
        cookies = dict(client.cookies)
    if answer.status_code != 302 or "sessionid" not in cookies:
        raise harness.BenchError(f"login failed: HTTP {answer.status_code}")
    return cookies


def time_views(
    server: harness.AsgiServer, cookies: dict[str, str], paths: dict[str, str], n: int
) -> dict[str, Any]:
    """``n`` timed GETs per view (after 2 untimed), interleaved in rounds."""
    import httpx

    headers = {"Host": f"{server.host}:{server.port}"}
    timings: dict[str, list[float]] = {name: [] for name in paths}
    info: dict[str, dict[str, Any]] = {}
    with httpx.Client(
        base_url=f"http://127.0.0.1:{server.port}", headers=headers, cookies=cookies, timeout=60
    ) as client:
        for round_ in range(n + 2):
            for name, path in paths.items():
                t = time.perf_counter()
                response = client.get(path)
                elapsed = (time.perf_counter() - t) * 1000
                if response.status_code != 200:
                    raise harness.BenchError(f"GET {path}: HTTP {response.status_code}")
                if round_ >= 2:
                    timings[name].append(elapsed)
                rows = response.text.count('name="_selected_action"')
                info[name] = {"path": path, "bytes": len(response.content),
                              "estimated_count_shown": "(estimated)" in response.text,
                              "result_rows": rows}  # fmt: skip
    out = {}
    for name, values in timings.items():
        out[name] = {
            **info[name],
            "median_ms": round(statistics.median(values), 1),
            "min_ms": round(min(values), 1),
            "max_ms": round(max(values), 1),
            "requests": len(values),
        }
    return out


def count_queries(paths: dict[str, str], *, plans: bool) -> dict[str, Any]:
    """SQL per page from an in-process client, and ``EXPLAIN (ANALYZE, BUFFERS)`` of each
    query the page runs on the job or batch table (execution time; plan when ``plans``)."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django_tenants.utils import schema_context

    with schema_context(SCHEMA):
        user = get_user_model().objects.get(username=USERNAME)
        client = Client(HTTP_HOST=DOMAIN)
        client.force_login(user)
    out: dict[str, Any] = {}
    for name, path in paths.items():
        client.get(path)  # warm
        with CaptureQueriesContext(connection) as ctx:
            t = time.perf_counter()
            response = client.get(path)
            elapsed = (time.perf_counter() - t) * 1000
        connection.set_schema_to_public()
        queries = ctx.captured_queries
        entry: dict[str, Any] = {
            "status": response.status_code,
            "queries": len(queries),
            "in_process_ms": round(elapsed, 1),
            "db_ms_captured": round(sum(float(q["time"]) for q in queries) * 1000, 1),
            "engine_table_queries": [],
        }
        for query in queries:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT") or not (
                '"orchestration_marketplacejob"' in sql or 'FROM "orchestration_batch"' in sql
            ):
                continue
            with _tenant_cursor() as cursor:
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
                plan = [row[0] for row in cursor.fetchall()]
            connection.set_schema_to_public()
            timing = next((line for line in plan if line.startswith("Execution Time")), "")
            item: dict[str, Any] = {
                "sql": sql if len(sql) <= 400 else f"{sql[:200]} ... {sql[-200:]}",
                "execution_ms": float(timing.split()[2]) if timing else None,
            }
            if plans:
                item["plan"] = plan
            entry["engine_table_queries"].append(item)
        out[name] = entry
    return out


def run_admin(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    from django_tenants.utils import schema_context

    from orchestration.models import Batch

    print(f"  admin lists: {args.small_rows:,} then {args.large_rows:,} jobs ...", flush=True)
    batches = filler_batches()
    with schema_context(SCHEMA):
        watched = Batch.objects.filter(name__startswith="live ").order_by("pk").first()
    paths = views(watched.pk if watched else batches[0])
    server = harness.AsgiServer(env, harness.RESULTS_DIR / f"{NAME}.admin.uvicorn.log.tmp",
                                host=DOMAIN)  # fmt: skip
    phases: dict[str, Any] = {}
    with server:
        cookies = http_login(server)
        for label, rows in (("small", args.small_rows), ("large", args.large_rows)):
            fill = fill_jobs(rows, args.large_rows, batches)
            print(
                f"  {fill['rows']:,} jobs ({fill['inserted']:,} inserted in {fill['insert_s']}s, "
                f"VACUUM ANALYZE {fill['vacuum_analyze_s']}s); timing {len(paths)} views ...",
                flush=True,
            )
            fill["autovacuum_workers_before_timing"] = autovacuum_workers()
            timed = time_views(server, cookies, paths, args.requests)
            queries = count_queries(paths, plans=label == "large")
            phases[label] = {"fill": fill, "views": timed, "queries": queries}
    with _tenant_cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND indexname LIKE %s",
            [SCHEMA, "job_%_trgm_idx"],
        )
        trigram = [row[0] for row in cursor.fetchall()]
    ratios = {}
    for name in paths:
        small = phases["small"]["views"][name]["median_ms"]
        large = phases["large"]["views"][name]["median_ms"]
        ratio = round(large / small, 2) if small else None
        ratios[name] = {
            "small_ms": small,
            "large_ms": large,
            "ratio": ratio,
            "within_2x": bool(ratio is not None and ratio <= TARGET_RATIO),
            "queries_small": phases["small"]["queries"][name]["queries"],
            "queries_large": phases["large"]["queries"][name]["queries"],
            "rows_shown_small": phases["small"]["views"][name]["result_rows"],
            "rows_shown_large": phases["large"]["views"][name]["result_rows"],
            "engine_sql_ms_small": _sql_ms(phases["small"]["queries"][name]),
            "engine_sql_ms_large": _sql_ms(phases["large"]["queries"][name]),
        }
    return {
        "views": paths,
        "phases": phases,
        "ratios": ratios,
        "trigram_indexes": trigram,
        "target_ratio": TARGET_RATIO,
        "uvicorn": " ".join(["uvicorn", *server.argv[3:]]),
    }


def _sql_ms(entry: dict[str, Any]) -> float:
    """EXPLAIN ANALYZE execution time of a page's queries on the job and batch tables."""
    return round(sum(q["execution_ms"] or 0 for q in entry["engine_table_queries"]), 1)


# --- report ------------------------------------------------------------------------------


def describe_settings(args: argparse.Namespace) -> dict[str, Any]:
    from django.conf import settings

    from orchestration import conf, live

    q = settings.Q_CLUSTER
    keys = ("workers", "poll", "queue_limit", "bulk", "save_limit", "timeout", "retry")
    return {
        "jobs": args.jobs,
        "job_kind": f"{MARKETPLACE}.{ACTION}",
        "step_sleep_ms": args.step_ms,
        "warmup_jobs": args.warmup_jobs,
        "workers": args.workers,
        "layers": args.layer_list,
        "redis_url": args.redis_url,
        "debug": settings.DEBUG,
        "q_cluster": {k: q.get(k) for k in keys},
        "orchestration": {k: conf.get(k) for k in conf.DEFAULTS},
        "live_progress_interval_s": live.PROGRESS_INTERVAL,
        "live_send_chunk": live.SEND_CHUNK,
        "small_rows": args.small_rows,
        "large_rows": args.large_rows,
        "requests_per_view": args.requests,
        "search": SEARCH_SKU,
        "status_filter": STATUS_FILTER,
        "browser": f"{CHROMIUM} {' '.join(CHROMIUM_ARGS)}",
    }


def describe_database(embedded: bool, name: str) -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_trgm'")
        trgm = bool(cursor.fetchone()[0])
    return harness.describe_database(embedded, name, pg_trgm_available=trgm)


def admin_findings(admin: dict[str, Any]) -> list[str]:
    """Why a view is more than 2x slower at the large size, from its plans and row counts."""
    findings = []
    for name, r in admin["ratios"].items():
        if r["within_2x"]:
            continue
        queries = admin["phases"]["large"]["queries"][name]["engine_table_queries"]
        scans = [q for q in queries if any("Seq Scan on orchestration_marketplacejob" in line
                                           for line in q.get("plan", []))]  # fmt: skip
        if scans:
            scan_ms = round(sum(q["execution_ms"] or 0 for q in scans), 1)
            findings.append(
                f"{name}: {len(scans)} sequential scan(s) of the job table at "
                f"{admin['phases']['large']['fill']['rows']:,} rows ({scan_ms} ms of "
                f"{r['engine_sql_ms_large']} ms SQL); trigram indexes: "
                f"{', '.join(admin['trigram_indexes']) or 'none (pg_trgm not available)'}"
            )
        elif r["rows_shown_small"] != r["rows_shown_large"]:
            findings.append(
                f"{name}: {r['rows_shown_small']} rows shown at the small size, "
                f"{r['rows_shown_large']} at the large one; SQL {r['engine_sql_ms_small']} -> "
                f"{r['engine_sql_ms_large']} ms: the difference is rendering more rows"
            )
        else:
            findings.append(
                f"{name}: SQL {r['engine_sql_ms_small']} -> {r['engine_sql_ms_large']} ms "
                f"of {r['small_ms']} -> {r['large_ms']} ms (see its plans)"
            )
    return findings


def assemble(args, machine, database, setup, live, admin, settings_used) -> dict[str, Any]:
    summary: dict[str, Any] = {"live": {}, "admin": {}}
    for layer, result in live.items():
        dom = result["commit_to_dom_ms"]
        summary["live"][layer] = {
            "commit_to_dom_ms": {k: dom["all"].get(k) for k in ("count", "p50", "p95", "p99")},
            "p95_within_100ms": result["target_met"],
            "by_source": {
                source: {k: d.get(k) for k in ("count", "p50", "p95", "p99")}
                for source, d in dom.items()
                if source != "all"
            },
            "commit_to_first_shown_ms_all": {
                k: result["commit_to_first_shown_ms"]["all"].get(k)
                for k in ("count", "p50", "p95", "p99")
            },
            "ws_to_dom_ms_all": {
                k: result.get("ws_to_dom_ms", {}).get("all", {}).get(k)
                for k in ("p50", "p95", "p99")
            },
            "event_to_dom_ms_all": {
                k: result.get("event_to_dom_ms", {}).get("all", {}).get(k)
                for k in ("p50", "p95", "p99")
            },
        }
    if admin:
        summary["admin"] = admin["ratios"]
        summary["admin_findings"] = admin_findings(admin)
    return {
        "benchmark": NAME,
        "timestamp": harness.now_iso(),
        "command": command_line(args),
        "summary": summary,
        "machine": machine,
        "git": harness.git_state(),
        "database": database,
        "versions": harness.package_versions(
            "django",
            "django-q2",
            "django-tenants",
            "channels",
            "channels-postgres",
            "channels-redis",
            "uvicorn",
            "websockets",
            "psycopg",
            "playwright",
        ),
        "settings": settings_used,
        "setup": setup,
        "live": live,
        "admin": admin,
        "notes": [
            "commit side: MarketplaceJob.started_at / completed_at, set inside the transaction "
            "just before its commit (Python clock of the worker); the batch label's value k is "
            "matched with the k-th completed_at of the batch",
            "browser side: Date.now() in a MutationObserver callback (same machine clock); "
            "ws_to_dom and dom_to_next_frame use performance.now() inside the page",
            "commit_to_dom: one sample per value the page showed; commit_to_first_shown: one "
            "per committed change (running, completed, each batch completion), the first moment "
            "the page showed it or a later state (coalesced progress waits included)",
            "the redis run sets REDIS_URL for uvicorn and the cluster: channel layer AND "
            "django-q2 broker in Redis",
            "not a test: nothing asserts on these figures",
        ],
    }


def print_summary(result: dict[str, Any], path: Path) -> None:
    lines = ["", f"== {NAME} ({result['machine']['cpu_count']} CPUs, load "
             f"{result['machine']['loadavg_at_start']} -> {result['machine']['loadavg_at_end']}, "
             f"PostgreSQL {result['database']['server_version']})"]  # fmt: skip
    for layer, s in result["summary"]["live"].items():
        d = s["commit_to_dom_ms"]
        lines.append(
            f"  live [{layer}] commit -> DOM: p50 {d['p50']} / p95 {d['p95']} / p99 {d['p99']} ms "
            f"({d['count']} updates); p95 <= {TARGET_P95_MS:g} ms: "
            f"{'yes' if s['p95_within_100ms'] else 'NO'}"
        )
        for source, b in s["by_source"].items():
            lines.append(
                f"      {source:<16} p50 {b['p50']} / p95 {b['p95']} / p99 {b['p99']} ms "
                f"({b['count']})"
            )
        f = s["commit_to_first_shown_ms_all"]
        w = s["ws_to_dom_ms_all"]
        lines.append(
            f"      per committed change: p50 {f['p50']} / p95 {f['p95']} / p99 {f['p99']} ms "
            f"({f['count']}); WebSocket arrival -> DOM p50 {w['p50']} / p95 {w['p95']} ms"
        )
    for name, r in result["summary"]["admin"].items():
        lines.append(
            f"  admin {name:<16} {r['small_ms']:>7} ms -> {r['large_ms']:>7} ms  x{r['ratio']}  "
            f"({'<= 2x' if r['within_2x'] else 'NOT within 2x'}; queries "
            f"{r['queries_small']} -> {r['queries_large']}; rows {r['rows_shown_small']} -> "
            f"{r['rows_shown_large']}; SQL {r['engine_sql_ms_small']} -> "
            f"{r['engine_sql_ms_large']} ms)"
        )
    for finding in result["summary"].get("admin_findings", []):
        lines.append(f"    - {finding}")
    git = result.get("git") or {}
    if git.get("commit"):
        dirty = git.get("uncommitted_changes") or []
        lines.append(
            f"  measured: commit {git['commit'][:10]}"
            + (f" + {len(dirty)} uncommitted files outside bench/" if dirty else "")
        )
    lines += [f"  took {result['duration_s']}s; written to {path}", f"  rerun: {result['command']}"]
    print("\n".join(lines))


if __name__ == "__main__":
    try:
        main()
    except harness.BenchError as exc:
        print(f"\n[{NAME}] failed: {exc}", file=sys.stderr)
        sys.exit(1)
