"""A real browser on the live admin and dashboard, against a real ASGI server and real workers.

Chromium (Debian's) through Playwright's sync API. ``*.localhost`` resolves to loopback in
Chromium, so pages use the tenant's own host name.
"""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from orchestration.models import Batch, MarketplaceJob
from orchestration.services import job_create, resource_set_limits, run_available_jobs
from tests.engine_providers import MARKETPLACE, set_faults
from tests.factories import ProductFactory
from tests.integration.live import slow_provider
from tests.integration.live.scenarios import login_cookie
from tests.integration.live.servers import PROVIDERS, start_server

pytestmark = pytest.mark.e2e

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# Runs before the page's own scripts on every load: counts loads of the batch page (a
# reload would count twice) and records every width the progress bar takes.
WATCH_BATCH_PAGE = """
(() => {
  if (!/\\/admin\\/orchestration\\/batch\\/\\d+\\/change\\//.test(location.pathname)) { return; }
  const loads = Number(sessionStorage.getItem("batchPageLoads") || "0") + 1;
  sessionStorage.setItem("batchPageLoads", String(loads));
  window.__percents = [];
  document.addEventListener("DOMContentLoaded", () => {
    const bar = document.querySelector("[data-live-batch] .live-bar");
    const record = () => window.__percents.push(parseInt(bar.style.width, 10));
    record();
    new MutationObserver(record).observe(bar, { attributes: true, attributeFilter: ["style"] });
  });
})();
"""


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API keeps an event loop registered on this thread, which makes
    # Django refuse ORM calls from the test body; the test body is plain sync code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("browser") / "uvicorn.log")
    yield server
    server.stop()


def _page(browser: Browser, server, cookie: str):
    context = browser.new_context()
    name, value = cookie.split("=", 1)
    context.add_cookies([{"name": name, "value": value, "url": server.url()}])
    context.add_init_script(WATCH_BATCH_PAGE)
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page


def test_a_batch_started_in_the_admin_fills_its_progress_bar_live(
    browser, server, tx_tenant_a, start_cluster
):
    products = ProductFactory.create_batch(8)
    resource_set_limits(key=slow_provider.MARKETPLACE, concurrency=1, rate_per_minute=None)
    start_cluster(workers=2, PROVIDER_MODULES=PROVIDERS, DRAIN_SECONDS=5)
    page = _page(browser, server, login_cookie(tx_tenant_a, "browser-staff"))

    page.goto(server.url(path="/admin/orchestration/batch/add/"))
    page.fill("input[name=name]", "Browser batch")
    page.select_option("select[name=job_type]", f"{slow_provider.MARKETPLACE}:publish")
    page.fill("textarea[name=skus]", "\n".join(p.sku for p in products))
    page.click("input[name=start]")  # the review: count and limits, nothing created yet
    expect(page.locator("#start-summary")).to_contain_text("8 jobs")
    page.click("input[name=start]")
    page.wait_for_url("**/admin/orchestration/batch/*/change/")
    batch = Batch.objects.get(name="Browser batch")
    bar = page.locator(f'[data-live-batch="{batch.pk}"]').first
    expect(page.locator("[data-live-status]").first).to_have_text("● live")
    expect(bar).to_have_attribute("data-percent", "100", timeout=60_000)
    expect(bar.locator(".live-label")).to_have_text("100% (8/8)")
    expect(bar).to_have_attribute("data-status", "completed")
    percents = page.evaluate("window.__percents")
    assert percents[-1] == 100
    assert any(0 < p < 100 for p in percents), percents  # it moved, not jumped at a reload
    assert percents == sorted(percents)
    assert page.evaluate("sessionStorage.getItem('batchPageLoads')") == "1"  # no reload
    page.context.close()


def test_retrying_a_failure_from_the_dashboard_turns_its_badge_green(
    browser, server, tx_tenant_a, start_cluster, tmp_path
):
    faults = tmp_path / "faults.json"
    set_faults(faults, {"only": {"mode": "permanent", "times": 1}})
    job = job_create(marketplace=MARKETPLACE, action="one", sku="RETRY-ME",
                     params={"faults": str(faults)})  # fmt: skip
    run_available_jobs()
    assert MarketplaceJob.objects.get(pk=job.pk).status == "failed"
    start_cluster(workers=1, PROVIDER_MODULES=PROVIDERS, DRAIN_SECONDS=5)
    page = _page(browser, server, login_cookie(tx_tenant_a, "dash-staff"))

    page.goto(server.url(path="/dashboard/"))
    row = page.locator(f'tr.failure[data-job="{job.pk}"]')
    badge = row.locator(f'[data-live-job="{job.pk}"]')
    expect(badge).to_have_text("failed")
    expect(page.locator("[data-live-status]").first).to_have_text("● live")
    row.locator("button[name=retry]").click()
    expect(badge).to_have_text("completed", timeout=60_000)
    expect(badge).to_have_class("live-badge status-completed")
    green = "rgb(46, 125, 50)"  # after the colour transition
    page.wait_for_function(
        f"() => getComputedStyle(document.querySelector('[data-live-job=\"{job.pk}\"]'))"
        f".backgroundColor === '{green}'"
    )
    assert MarketplaceJob.objects.get(pk=job.pk).status == "completed"
    page.context.close()


def test_a_read_only_user_sees_live_pages_without_action_buttons(
    browser, server, tx_tenant_a, tmp_path
):
    faults = tmp_path / "faults.json"
    set_faults(faults, {"only": {"mode": "permanent", "times": 1}})
    job = job_create(marketplace=MARKETPLACE, action="one", sku="LOOK-ONLY",
                     params={"faults": str(faults)})  # fmt: skip
    run_available_jobs()
    page = _page(browser, server, login_cookie(tx_tenant_a, "viewer", role="viewer"))
    for path in ("/admin/orchestration/marketplacejob/",
                 f"/admin/orchestration/marketplacejob/{job.pk}/change/",
                 "/admin/orchestration/batch/", "/dashboard/"):  # fmt: skip
        page.goto(server.url(path=path))
        expect(page.locator("[data-live-status]").first).to_have_text("● live")
        if "batch" not in path:
            expect(page.locator(f'[data-live-job="{job.pk}"]').first).to_have_text("failed")
        for selector in ("button[name=retry]", "button[name=cancel]", "button[name=run_now]",
                         "button[name=resume]", "select[name=action]", "a.bulk-retry",
                         "a.bulk-cancel", "a.addlink"):  # fmt: skip
            assert page.locator(selector).count() == 0, (path, selector)
    page.context.close()
