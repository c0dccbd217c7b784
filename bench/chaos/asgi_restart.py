"""Scenario 3: a dashboard in Chromium while the ASGI server is killed and started again."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.chaos.constants import LOG, STAFF_PASSWORD, STAFF_USER, TENANTS
from bench.chaos.procs import Workers
from bench.chaos.reports import job_report
from bench.chaos.setup import check_signalled

INSTRUMENT = """
(() => {
  if (location.pathname !== "/dashboard/") { return; }
  const loads = Number(sessionStorage.getItem("chaosLoads") || "0") + 1;
  sessionStorage.setItem("chaosLoads", String(loads));
  const C = window.__chaos = { opens: [], closes: [], snapshots: [], messages: 0 };
  const Native = window.WebSocket;
  class Recorded extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("open", () => C.opens.push(Date.now()));
      this.addEventListener("close", (e) => C.closes.push([Date.now(), e.code]));
      this.addEventListener("message", (event) => {
        C.messages += 1;
        try {
          const m = JSON.parse(event.data);
          if (m.type === "snapshot") { C.snapshots.push([Date.now(), m.of]); }
        } catch (err) { /* not JSON */ }
      });
    }
  }
  window.WebSocket = Recorded;
})();
"""


BAR_STATE = """(id) => {
  const el = document.querySelector('[data-live-batch="' + id + '"]');
  if (!el) { return null; }
  const label = el.querySelector('.live-label');
  return { status: el.dataset.status || null, percent: el.dataset.percent || null,
           label: label ? label.textContent : null,
           live: (document.querySelector('[data-live-status]') || {}).textContent || null };
}"""


def run_asgi_restart(
    args: argparse.Namespace, env: dict[str, str], effects: Path
) -> dict[str, Any]:
    from django_tenants.utils import schema_context
    from playwright.sync_api import sync_playwright

    from orchestration.models import Batch, MarketplaceJob
    from orchestration.services import JobSpec, batch_create, jobs_enqueue

    schema = TENANTS[0]
    domain = f"{schema}.localhost"
    fx = effects / "asgi"
    fx.mkdir()
    params = {"effects": str(fx), "step_ms": args.asgi_step_ms}
    with schema_context(schema):
        batch = batch_create(
            name="chaos asgi restart",
            jobs=[
                JobSpec(
                    marketplace="chaosfx",
                    action="three",
                    params=params,
                    max_retries=args.max_retries,
                )
            ]
            * args.asgi_jobs,
            created_by="chaos",
            start=False,
        )
        job_ids = list(MarketplaceJob.objects.filter(batch=batch).values_list("pk", flat=True))
    total = args.asgi_jobs
    print(
        f"  {total} chaosfx.three jobs ({args.asgi_step_ms:g} ms per step), dashboard of {schema}"
    )
    server = harness.AsgiServer(env, Path(str(LOG).format("asgi_restart.uvicorn")), host=domain)
    server2: harness.AsgiServer | None = None
    workers = Workers(
        env,
        Path(str(LOG).format("asgi_restart.run_workers")),
        workers=args.workers,
        extra_args=("--stop-grace", "5"),
    )
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop on this thread
    out: dict[str, Any] = {"jobs": total, "tenant": schema, "server_down": args.asgi_down}
    t0 = time.time()
    try:
        server.start()
        workers.start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=harness.CHROMIUM, args=harness.CHROMIUM_ARGS
            )
            try:
                page = harness.open_logged_in(
                    browser, server, "/dashboard/", username=STAFF_USER,
                    password=STAFF_PASSWORD, init_script=INSTRUMENT,
                )  # fmt: skip
                context = page.context
                page.wait_for_function("() => window.__chaos && window.__chaos.opens.length > 0")
                page.wait_for_function(
                    f"() => document.querySelector('[data-live-batch=\"{batch.pk}\"]')"
                )
                with schema_context(schema):
                    jobs_enqueue(job_ids=job_ids)
                t_enqueue = time.time()
                out.update(_asgi_restart_phase(args, page, server, batch.pk, total, t_enqueue))
                server2 = out.pop("_server2")
                # Resynchronised without a reload: the bar shows the final status and count.
                final = _wait_final(page, batch.pk, total, args.asgi_timeout)
                with schema_context(schema):
                    db_batch = Batch.objects.get(pk=batch.pk)
                chaos = page.evaluate("window.__chaos")
                loads = int(page.evaluate("sessionStorage.getItem('chaosLoads')") or 0)
                out.update(
                    final_bar=final,
                    batch_status_db=db_batch.status,
                    batch_done_db=db_batch.completed_jobs + db_batch.failed_jobs,
                    page_loads=loads,
                    ws_opens=len(chaos["opens"]),
                    ws_closes=[[round(t / 1000 - t0, 2), c] for t, c in chaos["closes"]],
                    snapshots=len(chaos["snapshots"]),
                    messages=chaos["messages"],
                )
                context.close()
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
        for s in (server, server2):
            if s is not None:
                with contextlib.suppress(Exception):
                    s.stop()
        out["workers_stop"] = workers.stop()
    report = job_report({schema: [batch.pk]})
    report.pop("_completions")
    report.pop("_step_completions")
    effect_counts = [len(p.read_text().splitlines()) for p in fx.iterdir()]
    final = out.get("final_bar") or {}
    reached = final.get("status") == out.get("batch_status_db") and final.get("label", "").endswith(
        f"({total}/{total})"
    )
    checks = {
        "reconnected": out.get("reconnect_after_ready_s") is not None,
        "final_status_shown_without_reload": bool(reached) and out.get("page_loads") == 1,
        "restart_was_mid_batch": (out.get("done_at_kill") or 0) < total
        and (out.get("done_db_at_reconnect") or total) < total,
        "all_settled": report["settled"] == report["jobs"],
        "no_duplicates": report["jobs_completed_twice"] == 0 and all(n == 1 for n in effect_counts),
    }
    out.update(
        settled=report["settled"],
        duplicates=report["jobs_completed_twice"] + sum(n - 1 for n in effect_counts if n > 1),
        longest_stall_s=None,
        restarts=None,
        recover_s=out.get("reconnect_after_kill_s"),
        **{"pass": all(checks.values())},
        checks=checks,
        engine=report,
        wall_s=round(time.time() - t0, 1),
    )
    return out


def _bar(page, batch_id: int) -> dict[str, Any] | None:
    return page.evaluate(BAR_STATE, batch_id)


def _done_of(bar: dict[str, Any] | None) -> int | None:
    if not bar or not bar.get("label"):
        return None
    m = re.search(r"\((\d+)/(\d+)\)", bar["label"])
    return int(m.group(1)) if m else None


def _asgi_restart_phase(
    args, page, server: harness.AsgiServer, batch_id: int, total: int, t_enqueue: float
) -> dict[str, Any]:
    """Wait until the bar moved (≥ 10 %), take the server down, start it again on the same
    port, and wait for the page's next WebSocket ``open``."""
    deadline = time.monotonic() + 60
    while True:
        check_signalled()
        bar = _bar(page, batch_id)
        done = _done_of(bar) or 0
        if done >= max(1, total // 10):
            break
        if time.monotonic() > deadline:
            raise harness.BenchError(f"the dashboard bar did not move in 60s: {bar}")
        time.sleep(0.2)
    opens_before = page.evaluate("window.__chaos.opens.length")
    t_kill = time.time()
    assert server.proc is not None
    if args.asgi_down == "kill":
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        server._log.close()
        server.proc = None
    else:
        server.stop()
    t_down = time.time()
    server2 = harness.AsgiServer(
        server.env, server.log_path.with_suffix(".2.tmp"), host=server.host, port=server.port
    )
    server2.start()
    t_ready = time.time()
    deadline = time.monotonic() + 60
    while page.evaluate("window.__chaos.opens.length") <= opens_before:
        check_signalled()
        if time.monotonic() > deadline:
            raise harness.BenchError("the page did not reconnect within 60s of the restart")
        time.sleep(0.05)
    t_open = page.evaluate(f"window.__chaos.opens[{opens_before}]") / 1000
    done_db = _db_done(batch_id)
    time.sleep(0.3)  # the snapshot that follows the subscription
    bar_after = _bar(page, batch_id)
    return {
        "_server2": server2,
        "done_at_kill": done,
        "bar_at_kill": bar,
        "server_down_s": round(t_ready - t_kill, 2),
        "server_stop_s": round(t_down - t_kill, 2),
        "kill_after_enqueue_s": round(t_kill - t_enqueue, 2),
        "reconnect_after_kill_s": round(t_open - t_kill, 2),
        "reconnect_after_ready_s": round(t_open - t_ready, 2),
        "done_db_at_reconnect": done_db,
        "bar_after_reconnect": bar_after,
        "done_shown_after_reconnect": _done_of(bar_after),
    }


def _db_done(batch_id: int) -> int:
    from django_tenants.utils import schema_context

    from orchestration.models import Batch

    with schema_context(TENANTS[0]):
        b = Batch.objects.get(pk=batch_id)
        return b.completed_jobs + b.failed_jobs + b.cancelled_jobs + b.skipped_jobs


def _wait_final(page, batch_id: int, total: int, timeout: float) -> dict[str, Any] | None:
    from orchestration.states import BATCH_TERMINAL

    deadline = time.monotonic() + timeout
    bar = None
    while time.monotonic() < deadline:
        check_signalled()
        bar = _bar(page, batch_id)
        if bar and bar.get("status") in BATCH_TERMINAL and _done_of(bar) == total:
            return bar
        time.sleep(0.2)
    return bar
