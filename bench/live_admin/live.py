"""Part 1: commit-to-DOM latency in a real browser, per channel layer, under uvicorn and a qcluster."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from typing import Any

from bench import harness
from bench.live_admin.analysis import analyse, layer_split
from bench.live_admin.constants import (
    ACTION,
    DOMAIN,
    MARKETPLACE,
    NAME,
    PASSWORD,
    REDUCED_MOTION,
    SCHEMA,
    STEPS,
    USERNAME,
    WARMUP_ACTION,
)
from bench.live_admin.load import (
    LOAD_ACTION,
    LOAD_MARKETPLACE,
    LOAD_MODES,
    LOAD_SCHEMA,
    achieved_rate,
    cancel_load,
    create_load_batch,
    load_env,
)
from bench.live_admin.probe import Probe
from bench.live_admin.tap import Tap

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
                    c: m.committed || null,
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


def enqueue_in_child(
    schema: str,
    warmup_id: int,
    batch_id: int,
    timeout: float,
    load_id: int | None = None,
    lead_steps: int = 0,
) -> None:
    """Runs in ``manage.py shell`` with the layer's environment (so the q2 broker and the
    channel layer are the server's): the warm-up batch, wait for it, then the load (if any)
    until it has committed ``lead_steps`` steps, then the watched batch."""
    from django_tenants.utils import schema_context

    from bench.live_admin.load import LOAD_SCHEMA, wait_for_load
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
            if load_id is not None:
                with schema_context(LOAD_SCHEMA):
                    load_jobs = MarketplaceJob.objects.filter(batch_id=load_id)
                    jobs_enqueue(job_ids=list(load_jobs.values_list("pk", flat=True)))
                wait_for_load(load_id, lead_steps, timeout)
    live.flush()


def run_live(
    args: argparse.Namespace, env: dict[str, str], layer: str, mode: str = "none"
) -> dict[str, Any]:
    from django.db.models import Count
    from django_tenants.utils import schema_context
    from playwright.sync_api import sync_playwright

    from orchestration.models import Batch, JobRun, MarketplaceJob
    from orchestration.services import JobSpec, batch_create
    from orchestration.states import BATCH_TERMINAL
    from tests.engine_providers import set_faults

    layer_env = load_env(args, env, mode)
    if layer == "redis":
        layer_env["REDIS_URL"] = args.redis_url
    run = layer if mode == "none" else f"{layer}+load_{mode}"
    workers = int(layer_env["Q_WORKERS"])
    print(f"  live [{run}]: uvicorn + qcluster ({workers} workers) + Chromium ...")
    load_id = None if mode == "none" else create_load_batch(args, run)
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
        layer_env, harness.RESULTS_DIR / f"{NAME}.{run}.uvicorn.log.tmp", host=DOMAIN
    )
    cluster = harness.Cluster(layer_env, harness.RESULTS_DIR / f"{NAME}.{run}.qcluster.log.tmp")
    child = None
    pressure = None
    tap = probe = None
    taps: list[dict] = []
    probes: list[dict] = []
    pages: dict[str, dict] = {}
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop on this thread
    try:
        server.start()
        cluster.start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=harness.CHROMIUM, args=harness.CHROMIUM_ARGS
            )
            try:
                # One context (one window) per page: a page in a background tab gets its
                # animation frames throttled; each page here is the only tab of its window.
                contexts = []
                opened = {}
                for name, path in (
                    ("batch_page", f"/admin/orchestration/batch/{batch.pk}/change/"),
                    ("job_list", f"/admin/orchestration/marketplacejob/?batch={batch.pk}"),
                ):
                    page = harness.open_logged_in(
                        browser, server, path, username=USERNAME, password=PASSWORD,
                        init_script=INSTRUMENT, reduced_motion=REDUCED_MOTION,
                    )  # fmt: skip
                    contexts.append(page.context)
                    page.wait_for_function(
                        "() => window.__bench && window.__bench.ws.some(m => m.type === 'snapshot')"
                    )
                    opened[name] = page
                with schema_context(SCHEMA):
                    job_ids = list(
                        MarketplaceJob.objects.filter(batch_id=batch.pk).values_list(
                            "pk", flat=True
                        )
                    )
                tap = Tap(layer_env, harness.RESULTS_DIR / f"{NAME}.{run}.tap.tmp", SCHEMA,
                          batch.pk, job_ids, args.timeout * 3).start()  # fmt: skip
                cookie = "; ".join(
                    f"{c['name']}={c['value']}" for c in opened["batch_page"].context.cookies()
                )
                probe = Probe(harness.RESULTS_DIR / f"{NAME}.{run}.probe.tmp", server.port,
                              DOMAIN, cookie, batch.pk, job_ids, args.timeout * 3).start()  # fmt: skip
                child = subprocess.Popen(
                    [sys.executable, "manage.py", "shell", "-c",
                     f"from bench.live_admin.live import enqueue_in_child; "
                     f"enqueue_in_child({SCHEMA!r}, {warmup.pk}, {batch.pk}, {args.timeout}, "
                     f"{load_id}, {args.load_lead_steps})"],
                    cwd=harness.BASE_DIR, env=layer_env, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, text=True,
                )  # fmt: skip
                pressure_start = harness.cpu_pressure()
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
                pressure = harness.cpu_pressure_between(pressure_start, harness.cpu_pressure())
                if load_id is not None:
                    cancel_load(load_id)  # the drains run dry: the cluster stops quickly
                time.sleep(1.5)  # the last messages reach the pages
                taps = tap.stop()
                probes = probe.stop()
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
        for recorder in (tap, probe):
            if recorder is not None:
                recorder.stop()
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
    analysis["layer_split_ms"] = layer_split(pages, taps, probes)
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
    analysis["load_mode"] = mode
    analysis["workers"] = workers
    analysis["cpu_pressure_pct"] = pressure  # PSI: share of the run some task waited for a CPU
    analysis["loadavg_after"] = harness.loadavg()
    if load_id is not None:
        analysis["load"] = {
            "jobs": args.load_jobs,
            "job_kind": f"{LOAD_MARKETPLACE}.{LOAD_ACTION}",
            "tenant": LOAD_SCHEMA,
            "lead_steps": args.load_lead_steps,
            "env": LOAD_MODES[mode],
            **achieved_rate(load_id, SCHEMA, first_start, batch.completed_at),
        }
    analysis["q2_broker"] = "redis" if layer == "redis" else "orm (PostgreSQL)"
    analysis["uvicorn"] = " ".join(["uvicorn", *server.argv[3:]])
    analysis["page_visibility"] = {k: v.get("visibility") for k, v in pages.items()}
    analysis["final_label"] = pages.get("batch_page", {}).get("final_text")
    dist = analysis["commit_to_dom_ms"]["all"]
    rate = analysis.get("load", {}).get("all_steps_per_s")
    print(
        f"  live [{run}]: commit -> DOM p50 {dist.get('p50')} / p95 {dist.get('p95')} / "
        f"p99 {dist.get('p99')} ms over {dist.get('count')} updates"
        + (f", {rate} steps/s in the window" if rate is not None else "")
    )
    return analysis
