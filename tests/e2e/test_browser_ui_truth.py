"""The staff UI tells the truth, live (issue 11): one browser test per defect.

A real Chromium against a real ASGI server; workers are a real qcluster where the test
needs a job to run while the page watches, else the test runs jobs in-process. Waits are
liveness bounds, not benchmarks.
"""

from __future__ import annotations

import re
import time

import pytest
from django.core.management import call_command
from django.test import override_settings
from playwright.sync_api import expect

from orchestration.engine.claims import claim_jobs
from orchestration.models import Batch, MarketplaceJob
from orchestration.services import (
    JobSpec,
    batch_create,
    job_create,
    jobs_enqueue,
    resource_set_limits,
    run_available_jobs,
)
from tests.e2e import test_browser_live as shared
from tests.e2e import ui_providers
from tests.factories import ProductFactory
from tests.integration.live.scenarios import login_cookie
from tests.integration.live.servers import PROVIDERS

pytestmark = pytest.mark.e2e

# One browser and one ASGI server for this module (the fixtures of the first browser tests).
browser = shared.browser
server = shared.server
_page = shared._page

UI = ui_providers.MARKETPLACE
WORKER_PROVIDERS = f"{PROVIDERS},tests.e2e.ui_providers"


def _live(page) -> None:
    expect(page.locator("[data-live-status]").first).to_have_text("● live")


def _specs(n: int, **params) -> list[JobSpec]:
    return [JobSpec(marketplace=UI, action="publish", sku=f"UI-{i}", params=params or None)
            for i in range(n)]  # fmt: skip


def test_the_batch_page_status_and_counts_move_live_with_its_bar(
    browser, server, tx_tenant_a, start_cluster
):
    resource_set_limits(key=UI, concurrency=1, rate_per_minute=None)
    batch = batch_create(name="Counted", jobs=_specs(4, seconds=0.3), start=False)
    page = _page(browser, server, login_cookie(tx_tenant_a, "ui-batch"))
    page.goto(server.url(path=f"/admin/orchestration/batch/{batch.pk}/change/"))
    _live(page)
    status = page.locator(f'[data-live-batch-status="{batch.pk}"]')
    completed = page.locator(f'[data-live-batch-counts="{batch.pk}"] [data-count="completed"]')
    expect(status).to_have_text("pending")
    expect(completed).to_have_text("0")
    assert page.locator("input[name=_save], input[name=_continue]").count() == 0  # nothing to save

    start_cluster(workers=1, PROVIDER_MODULES=WORKER_PROVIDERS, DRAIN_SECONDS=5)
    jobs_enqueue(job_ids=list(batch.jobs.values_list("pk", flat=True)))
    expect(status).to_have_text("running", timeout=60_000)
    expect(page.locator("tr.batch-job .live-badge.status-running")).to_have_count(1, timeout=30_000)
    expect(status).to_have_text("completed", timeout=60_000)
    expect(completed).to_have_text("4")
    bar = page.locator(f'[data-live-batch="{batch.pk}"] .live-label')
    expect(bar).to_have_text("100% (4/4)")
    # The server-rendered part agrees with the bar once it settles: counts, times, no buttons.
    summary = page.locator(".batch-summary")
    expect(summary).to_have_attribute("data-batch-status", "completed", timeout=10_000)
    expect(summary.locator('[data-count="completed"]')).to_have_text("4")
    expect(summary.locator(".batch-times time")).to_have_count(2)
    expect(page.locator("tr.batch-job .live-badge.status-completed")).to_have_count(4)
    assert page.locator("button[name=cancel], button[name=resume]").count() == 0
    page.context.close()


def test_a_cancel_during_the_last_step_ends_truthful_and_stable(
    browser, server, tx_tenant_a, start_cluster
):
    job = job_create(marketplace=UI, action="publish", sku="LATE-1", params={"seconds": 6})
    start_cluster(workers=1, PROVIDER_MODULES=WORKER_PROVIDERS, DRAIN_SECONDS=5)
    page = _page(browser, server, login_cookie(tx_tenant_a, "ui-cancel"))
    page.goto(server.url(path=f"/admin/orchestration/marketplacejob/{job.pk}/change/"))
    _live(page)
    badge = page.locator(f'.job-state [data-live-job="{job.pk}"]')
    last_step = page.locator("table.timeline tr.task").nth(2).locator(".live-badge")
    expect(last_step).to_have_text("running", timeout=60_000)
    page.locator("button[name=cancel]").click()
    expect(page.locator("[data-live-answer]")).to_contain_text("if that is its last step")
    expect(badge).to_have_text("completed", timeout=30_000)
    late = page.locator(f'[data-live-late-cancel="{job.pk}"]')
    expect(late).to_be_visible()
    expect(late).to_contain_text("too late")
    # The timeline is refetched on the final status: the run ended, no Cancel, no pending flag.
    expect(page.locator("table.runs tr.run").first.locator(".live-badge")).to_have_text("completed")
    expect(page.locator("button[name=cancel]")).to_have_count(0)
    expect(page.locator(".cancel-pending")).to_have_count(0)
    page.reload()  # and it stays so
    _live(page)
    expect(badge).to_have_text("completed")
    expect(page.locator(".cancel-pending")).to_have_count(0)
    expect(page.locator(".job-live")).not_to_contain_text("cancel requested")
    expect(page.locator("button[name=cancel]")).to_have_count(0)
    job.refresh_from_db()
    assert (job.status, job.cancel_requested) == ("completed", False)
    page.context.close()


def test_a_click_survives_a_live_re_render_during_the_press(browser, server, tx_tenant_a):
    """The timeline (with its Cancel button) is re-rendered on every message of its job.
    A re-render between the button's mousedown and mouseup replaced the button under the
    pointer, so the browser fired no click and the cancel was silently lost (seen once in
    CI). The swap now waits until the press ends."""
    job = job_create(marketplace=UI, action="publish", sku="PRESS-1")
    assert [c.job_id for c in claim_jobs(limit=1)] == [job.pk]  # RUNNING: Cancel is shown
    page = _page(browser, server, login_cookie(tx_tenant_a, "ui-press"))
    page.goto(server.url(path=f"/admin/orchestration/marketplacejob/{job.pk}/change/"))
    _live(page)
    expect(page.locator("button[name=cancel]")).to_be_visible()
    # Scroll and measure in one script: the page's own first re-render (the snapshot's) may
    # replace the button between two separate calls; it re-renders in the same place.
    box = page.evaluate(
        """() => {
            const button = document.querySelector("button[name=cancel]");
            button.scrollIntoView({ block: "center" });
            const r = button.getBoundingClientRect();
            return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
        }"""
    )
    page.mouse.move(box["x"], box["y"])
    page.mouse.down()
    # A live re-render lands while the button is pressed (as a job message would cause).
    with page.expect_response(lambda r: "/timeline/" in r.url):
        page.evaluate(f"window.orchestrationLivePage.refreshTimeline({job.pk})")
    page.wait_for_timeout(100)  # let the fetched fragment be applied (or held back)
    page.mouse.up()
    expect(page.locator("[data-live-answer]")).to_contain_text("if that is its last step")
    job.refresh_from_db()
    assert job.cancel_requested
    page.context.close()


def test_run_now_says_what_happens_and_shows_the_reservation(browser, server, tx_tenant_a):
    resource_set_limits(key=UI, concurrency=1, rate_per_minute=None)
    busy = job_create(marketplace=UI, action="publish", sku="BUSY-1")
    waiting = job_create(marketplace=UI, action="publish", sku="NEXT-1")
    assert [c.job_id for c in claim_jobs(limit=1)] == [busy.pk]  # holds the only place
    page = _page(browser, server, login_cookie(tx_tenant_a, "ui-direct"))
    page.goto(server.url(path=f"/admin/orchestration/marketplacejob/{waiting.pk}/change/"))
    page.locator("button[name=run_now]").click()
    message = page.locator(".messagelist")
    expect(message).to_contain_text(f"job {waiting.pk} runs next on {UI} (1/1 busy)")
    assert "Started" not in message.inner_text()
    expect(page.locator(".reservation")).to_contain_text("Runs next")
    page.goto(server.url(path="/admin/orchestration/marketplacejob/"))
    row = page.locator("#result_list tr", has=page.locator(f'a[href$="/{waiting.pk}/change/"]'))
    expect(row.locator(".status-direct")).to_have_text("run now · reserved")
    page.goto(server.url(path="/dashboard/"))
    expect(page.locator(f'tr.queue[data-resource="{UI}"] .reserved')).to_contain_text(
        f"#{waiting.pk}"
    )
    page.context.close()


def test_a_backing_off_batch_shows_its_retrying_count_and_next_attempt(
    browser, server, tx_tenant_a
):
    batch = batch_create(name="Backing off", jobs=_specs(3, fail_steps=["upload"]), start=False)
    cookie = login_cookie(tx_tenant_a, "ui-retrying")
    batch_page = _page(browser, server, cookie)
    batch_page.goto(server.url(path=f"/admin/orchestration/batch/{batch.pk}/change/"))
    dashboard = _page(browser, server, cookie)
    dashboard.goto(server.url(path="/dashboard/"))
    _live(batch_page)
    _live(dashboard)
    expect(dashboard.locator("#panel-retrying tr.retrying-job")).to_have_count(0)

    with override_settings(ORCHESTRATION={"RETRY_BASE_SECONDS": 120, "RETRY_MAX_SECONDS": 300}):
        jobs_enqueue(job_ids=list(batch.jobs.values_list("pk", flat=True)))
        run_available_jobs()
    assert set(batch.jobs.values_list("status", flat=True)) == {"retrying"}

    counts = batch_page.locator(f'.batch-summary [data-live-batch-counts="{batch.pk}"]')
    expect(counts.locator('[data-count="retrying"]')).to_have_text("3", timeout=15_000)
    expect(batch_page.locator(".batch-counts .next-attempt time")).to_have_text(
        re.compile(r"^in \d+ (s|min)"), timeout=5_000
    )
    expect(batch_page.locator("tr.batch-job .status-retrying")).to_have_count(3)
    expect(dashboard.locator("#panel-retrying tr.retrying-job")).to_have_count(3, timeout=15_000)
    expect(dashboard.locator("#panel-retrying tr.retrying-job time").first).to_have_text(
        re.compile(r"^in \d+ (s|min).*\(\d\d:\d\d:\d\d\)$")
    )
    dash_counts = dashboard.locator(f'tr.dash-batch[data-batch="{batch.pk}"]')
    expect(dash_counts.locator('[data-count="retrying"]')).to_have_text("3", timeout=15_000)
    batch_list = _page(browser, server, cookie)
    batch_list.goto(server.url(path="/admin/orchestration/batch/"))
    row = batch_list.locator(
        "#result_list tr", has=batch_list.locator(f'[data-live-batch="{batch.pk}"]')
    )
    expect(row.locator('[data-count="retrying"]')).to_have_text("3")
    expect(row.locator(".live-bar-retrying")).to_have_attribute("style", re.compile("width: 100%"))
    for page in (batch_page, dashboard, batch_list):
        page.context.close()


def test_a_batch_started_from_the_command_line_appears_on_open_pages_at_once(
    browser, server, tx_tenant_a
):
    products = ProductFactory.create_batch(2)
    cookie = login_cookie(tx_tenant_a, "ui-cli")
    dashboard = _page(browser, server, cookie)
    dashboard.goto(server.url(path="/dashboard/"))
    batch_list = _page(browser, server, cookie)
    batch_list.goto(server.url(path="/admin/orchestration/batch/"))
    _live(dashboard)
    _live(batch_list)
    expect(batch_list.locator(".paginator")).to_contain_text("0 batches")

    started = time.monotonic()
    call_command("publish", "--tenant", tx_tenant_a.schema_name, "--marketplace", UI,
                 *[f"--sku={p.sku}" for p in products], "--name", "From the shell")  # fmt: skip
    batch = Batch.objects.get(name="From the shell")
    dashboard.locator(f'[data-live-batch="{batch.pk}"]').wait_for(timeout=10_000)
    batch_list.locator(f'[data-live-batch="{batch.pk}"]').wait_for(timeout=10_000)
    elapsed = time.monotonic() - started
    assert elapsed < 8, elapsed  # ~0.2 s here; the dashboard's poll was every 15 s
    expect(batch_list.locator(".paginator")).to_contain_text("1 batch")
    for page in (dashboard, batch_list):
        page.context.close()


def test_lists_at_1024px_show_status_progress_and_error_without_scrolling(
    browser, server, tx_tenant_a
):
    batch = batch_create(name="A batch with a rather long name for a narrow screen",
                         jobs=_specs(2, fail_steps=["prepare"]), start=False)  # fmt: skip
    job = job_create(marketplace=UI, action="publish", sku="SKU-WITH-A-LONG-NAME-000123",
                     params={"fail_steps": ["prepare"]}, max_retries=0)  # fmt: skip
    run_available_jobs()
    job.refresh_from_db()
    assert job.status == "failed"
    page = _page(browser, server, login_cookie(tx_tenant_a, "ui-narrow"))
    page.set_viewport_size({"width": 1024, "height": 768})
    for path, columns in (
        ("/admin/orchestration/marketplacejob/", ("status_badge", "error_column", "next_column")),
        ("/admin/orchestration/batch/", ("status_badge", "progress", "counts")),
    ):
        page.goto(server.url(path=path))
        _live(page)
        assert page.evaluate("document.documentElement.scrollWidth") <= 1024, path
        for column in columns:
            cell = page.locator(f"#result_list td.field-{column}").first
            box = cell.bounding_box()
            assert box and box["x"] + box["width"] <= 1024, (path, column, box)
        if "marketplacejob" in path:
            expect(page.locator("#result_list td.field-error_column").first).to_contain_text(
                "HTTP 503"
            )
    assert batch.pk
    page.context.close()


def test_retry_from_step_offers_the_step_that_failed(browser, server, tx_tenant_a):
    job = job_create(marketplace=UI, action="publish", sku="STEP-2",
                     params={"fail_steps": ["upload"]}, max_retries=0)  # fmt: skip
    run_available_jobs()
    assert MarketplaceJob.objects.get(pk=job.pk).status == "failed"
    page = _page(browser, server, login_cookie(tx_tenant_a, "ui-step"))
    page.goto(server.url(path=f"/admin/orchestration/marketplacejob/{job.pk}/change/"))
    expect(page.locator("select[name=step_order]")).to_have_value("2")
    expect(page.locator("table.runs tr.run").first).to_contain_text("final: no retry follows")
    page.context.close()


def test_a_failure_retried_from_the_dashboard_leaves_recent_failures(browser, server, tx_tenant_a):
    faulty = job_create(marketplace=UI, action="publish", sku="FIXED-1",
                        params={"fail_steps": ["prepare"]}, max_retries=0)  # fmt: skip
    run_available_jobs()
    page = _page(browser, server, login_cookie(tx_tenant_a, "ui-fixed"))
    page.goto(server.url(path="/dashboard/"))
    _live(page)
    row = page.locator(f'tr.failure[data-job="{faulty.pk}"]')
    row.locator("button[name=retry]").click()
    expect(row.locator(f'[data-live-job="{faulty.pk}"]')).to_have_text("queued")
    MarketplaceJob.objects.filter(pk=faulty.pk).update(params={})  # the cause is fixed
    run_available_jobs()
    expect(row.locator(f'[data-live-job="{faulty.pk}"]')).to_have_text("completed", timeout=15_000)
    expect(row).to_have_count(0, timeout=15_000)
    expect(page.locator("#panel-failures")).to_contain_text("No failed jobs")
    page.context.close()


# Records, from the page's own clock, when each region re-fetch starts, and which rows of the
# admin list had cells replaced (a cell's children swapped, not a badge's text moved).
WATCH_REGIONS = """
(() => {
  window.__fetches = [];
  window.__patched = new Set();
  window.__renders = 0;
  window.__sockets = [];
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) { super(...args); window.__sockets.push(this); }
  };
  const native = window.fetch;
  window.fetch = function (url, options) {
    const headers = (options && options.headers) || {};
    if (headers["X-Requested-With"] === "fetch") { window.__fetches.push(performance.now()); }
    return native.apply(this, arguments);
  };
  document.addEventListener("live:rendered", () => { window.__renders += 1; });
  document.addEventListener("DOMContentLoaded", () => {
    const body = document.querySelector("#result_list tbody");
    if (!body) { return; }
    new MutationObserver((mutations) => {
      for (const m of mutations) {
        if (m.target.tagName !== "TD" && m.target.tagName !== "TH") { continue; }
        const box = m.target.closest("tr").querySelector("input.action-select");
        window.__patched.add(box ? Number(box.value) : -1);
      }
    }).observe(body, { childList: true, subtree: true });
  });
})();
"""


def _watched_job_list(browser, server, tenant, user: str, batch_id: int):
    page = _page(browser, server, login_cookie(tenant, user))
    page.context.add_init_script(WATCH_REGIONS)
    page.goto(server.url(path=f"/admin/orchestration/marketplacejob/?batch={batch_id}"))
    _live(page)
    page.wait_for_function("() => (window.orchestrationLive.byType.snapshot || 0) >= 1")
    return page


def test_a_snapshot_that_moves_a_job_re_renders_its_row(browser, server, tx_tenant_a):
    batch = batch_create(name="Moved unseen", jobs=_specs(2), start=False)
    ids = sorted(batch.jobs.values_list("pk", flat=True))
    page = _watched_job_list(browser, server, tx_tenant_a, "ui-unseen", batch.pk)
    # The job moves while the page hears nothing of it (no event), then the page reconnects.
    MarketplaceJob.objects.filter(pk=ids[1]).update(status="queued")
    page.evaluate("() => window.__sockets.forEach((s) => s.close())")
    row = page.locator("#result_list tr", has=page.locator(f'input[value="{ids[1]}"]'))
    expect(row.locator(".live-badge")).to_have_text("queued")
    page.wait_for_function("() => window.__renders >= 1")
    assert page.evaluate("() => Array.from(window.__patched)") == [ids[1]]
    page.context.close()


def test_a_list_re_render_replaces_only_the_rows_that_moved_and_keeps_the_selection(
    browser, server, tx_tenant_a
):
    batch = batch_create(name="Patched rows", jobs=_specs(4), start=False)
    ids = sorted(batch.jobs.values_list("pk", flat=True))
    page = _watched_job_list(browser, server, tx_tenant_a, "ui-patch", batch.pk)
    page.check(f'#result_list input.action-select[value="{ids[0]}"]')
    for moved in ids[1:3]:
        page.evaluate("() => { window.__patched.clear(); window.__renders = 0; }")
        jobs_enqueue(job_ids=[moved])
        row = page.locator("#result_list tr", has=page.locator(f'input[value="{moved}"]'))
        expect(row.locator(".live-badge")).to_have_text("queued")
        page.wait_for_function(f"() => window.__patched.has({moved})")
        assert page.evaluate("() => Array.from(window.__patched)") == [moved]
    assert page.is_checked(f'#result_list input.action-select[value="{ids[0]}"]')
    page.context.close()


def test_a_re_render_that_cost_more_spaces_the_next_one_out(browser, server, tx_tenant_a):
    batch = batch_create(name="Slow renders", jobs=_specs(3), start=False)
    ids = sorted(batch.jobs.values_list("pk", flat=True))
    page = _watched_job_list(browser, server, tx_tenant_a, "ui-budget", batch.pk)

    def slow(route):  # a busy server: every re-fetch of the list takes 0.5 s or more
        if route.request.headers.get("x-requested-with") == "fetch":
            time.sleep(0.5)
        route.continue_()

    page.route("**/admin/orchestration/marketplacejob/*", slow)
    jobs_enqueue(job_ids=[ids[0]])
    page.wait_for_function("() => window.__renders >= 1", timeout=30_000)
    jobs_enqueue(job_ids=[ids[1]])
    page.wait_for_function("() => window.__renders >= 2", timeout=30_000)
    first, second = page.evaluate("() => window.__fetches")[:2]
    # At most 1 re-render a second while they are cheap; 8 x 0.5 s apart once they cost that.
    assert second - first >= 8 * 500, (first, second)
    page.context.close()


def test_a_re_render_corrects_a_badge_that_a_message_moved(browser, server, tx_tenant_a):
    from django.db import transaction

    from orchestration import events

    batch = batch_create(name="Contradicted", jobs=_specs(2), start=False)
    ids = sorted(batch.jobs.values_list("pk", flat=True))
    page = _watched_job_list(browser, server, tx_tenant_a, "ui-contradicted", batch.pk)
    row = page.locator("#result_list tr", has=page.locator(f'input[value="{ids[0]}"]'))
    expect(row.locator(".live-badge")).to_have_text("pending")
    snapshots = page.evaluate("() => window.orchestrationLive.byType.snapshot")
    page.wait_for_function(f"() => window.orchestrationLive.byType.snapshot > {snapshots}")
    # (That was the subscription's catch-up snapshot: no other comes to correct the badge.)
    # A message says the job runs; the database, which the server renders, says it waits
    # (as when a later message was lost). The re-render it causes must show the server's.
    deadline = time.monotonic() + 30
    while not page.evaluate("() => window.orchestrationLive.byType.job_status || 0"):
        assert time.monotonic() < deadline, "the message did not reach the page"
        with transaction.atomic():
            events.emit("job_status", status="running", job_id=ids[0], batch_id=batch.pk,
                        data={"from": "pending"})  # fmt: skip
        page.wait_for_timeout(1000)  # (until the publisher knows the page watches the job)
    assert page.evaluate("() => window.orchestrationLive.last.status") == "running"
    page.wait_for_function("() => window.__renders >= 1")
    expect(row.locator(".live-badge")).to_have_text("pending")
    page.context.close()
