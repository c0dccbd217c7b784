"""The operator's admin pages in a real browser, with real workers (``run_workers``: the
watchdog that fires schedules, and its django-q2 cluster that carries out operations):
a schedule created in the admin and fired by the engine; a bulk retry over a filter that
becomes an operation whose progress the page follows to the end."""

from __future__ import annotations

import re
import time

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from orchestration.models import MarketplaceJob
from orchestration.services import JobSpec, batch_create, jobs_cancel, resource_pause
from scheduler.models import Schedule, ScheduleFiring
from tests.e2e import test_browser_live as shared
from tests.e2e.conftest import wait_for
from tests.engine_providers import MARKETPLACE
from tests.factories import ProductFactory
from tests.integration.live.scenarios import login_cookie
from tests.integration.live.servers import PROVIDERS, start_server

pytestmark = pytest.mark.e2e

browser = shared.browser
_page = shared._page

BULK = 60
# A server whose bulk requests carry out at most 20 jobs themselves (so 60 go to a worker),
# and workers that handle 10 jobs per chunk (so the page sees the count move).
SERVER_ENV = {"OPERATIONS_INLINE_MAX": "20"}
WORKER_ENV = {"OPERATIONS_CHUNK": "10"}


@pytest.fixture
def server(django_db_setup, tmp_path, monkeypatch):
    for name, value in SERVER_ENV.items():
        monkeypatch.setenv(name, value)
    server = start_server(tmp_path / "uvicorn.log")
    yield server
    server.stop()


def test_schedule_fired_and_bulk_retry_followed_in_the_browser(
    browser, server, tx_tenant_a, start_cluster, tmp_path, monkeypatch
):
    products = [ProductFactory(sku=f"SCHED-{i}") for i in range(2)]
    # Nothing needs to run for real: the work stays queued where the test can count it.
    resource_pause(key="ebay")
    resource_pause(key="testmkt")
    params = {"ledger": str(tmp_path / "ledger.jsonl"), "faults": str(tmp_path / "f.json")}
    failed = batch_create(
        name="to retry", start=False,
        jobs=[JobSpec(marketplace=MARKETPLACE, action="one", params=params) for _ in range(BULK)],
    )  # fmt: skip
    jobs_cancel(queryset=MarketplaceJob.objects.filter(batch=failed))
    for name, value in WORKER_ENV.items():
        monkeypatch.setenv(name, value)
    # A generous stall bound: on a loaded machine a cluster takes a while to start.
    start_cluster(
        workers=2, command=("run_workers", "--sweep-seconds", "1", "--stall-seconds", "60"),
        PROVIDER_MODULES=PROVIDERS,
    )  # fmt: skip
    page = _page(browser, server, login_cookie(tx_tenant_a, "operator-staff"))

    # A schedule, created in the admin: a bad cron is a field error, then a good one.
    page.goto(server.url(path="/admin/scheduler/schedule/add/"))
    page.fill("input[name=name]", "Nightly sync")
    page.select_option("select[name=action]", "sync")
    page.check("input[name=marketplaces][value=ebay]")
    page.check("input[name=all_products]")
    page.fill("input[name=cron]", "0 27 * * *")
    page.fill("input[name=timezone]", "Europe/Paris")
    page.click("input[name=_continue]")
    expect(page.locator(".errorlist")).to_contain_text("bad cron expression")
    page.fill("input[name=cron]", "30 2 * * *")
    page.click("input[name=_continue]")
    page.wait_for_url(re.compile(r".*/admin/scheduler/schedule/\d+/change/"))
    expect(page.locator("ol.schedule-preview li")).to_have_count(5)
    expect(page.locator("ol.schedule-preview li").first).to_contain_text("02:30")
    schedule = Schedule.objects.get(name="Nightly sync")

    # Its slot comes (time travel on the row); the workers' watchdog fires it, once.
    page.goto(server.url(path="/dashboard/"))
    Schedule.objects.filter(pk=schedule.pk).update(
        next_run_at=timezone.now() - timezone.timedelta(minutes=1)
    )
    row = page.locator(f'tr.schedule-row[data-schedule="{schedule.pk}"]')
    expect(row).to_contain_text("started batch #", timeout=90_000)
    firing = ScheduleFiring.objects.get(schedule=schedule)
    assert firing.outcome == "started"
    assert MarketplaceJob.objects.filter(batch_id=firing.batch_id).count() == len(products)
    schedule.refresh_from_db()
    assert schedule.next_run_at is not None and schedule.next_run_at > timezone.now()

    # A bulk retry over the job list's filter becomes an operation with its progress page.
    page.goto(server.url(path=f"/admin/orchestration/marketplacejob/?marketplace={MARKETPLACE}"
                              "&status__exact=cancelled"))  # fmt: skip
    page.click("a.bulk-retry")
    expect(page.locator(".bulk-count strong")).to_have_text(str(BULK))
    page.click("input[name=confirm]")
    page.wait_for_url(re.compile(r".*/admin/operations/operation/\d+/change/"))
    count = page.locator(".operation-live .operation-count")
    expect(count).to_have_text(re.compile(rf"^\d+ of {BULK}$"))
    # What the page shows while a worker goes (kept for the failure message; no timing).
    seen = [count.text_content()]
    deadline = time.monotonic() + 240
    while "Done" not in (page.locator(".operation-live .operation-status").text_content() or ""):
        assert time.monotonic() < deadline, f"the operation did not end; the page showed {seen}"
        page.wait_for_timeout(250)
        if count.text_content() != seen[-1]:
            seen.append(count.text_content())
    expect(count).to_have_text(f"{BULK} of {BULK}")
    expect(page.locator(".operation-live .operation-status")).to_have_text("Done")
    expect(page.locator(".operation-live .operation-done")).to_have_text(str(BULK))
    wait_for(
        lambda: MarketplaceJob.objects.filter(batch=failed, status="queued").count() == BULK,
        timeout=30, what="every job queued again",
    )  # fmt: skip
    # The dashboard lists it with the same numbers.
    page.goto(server.url(path="/dashboard/"))
    expect(page.locator("#panel-operations .operation-row").first).to_contain_text(
        f"{BULK} of {BULK}"
    )
    page.context.close()
