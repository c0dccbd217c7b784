"""The UI guide's pictures (docs/ui/*.png): ``make screenshots``.

Not part of the suite (its file name is not collected: it checks nothing the other browser
tests do not); pytest runs it when named on the command line. A batch with completed,
backing-off and failed jobs, a running job and a "run now" reservation, run in-process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import override_settings
from playwright.sync_api import expect

from orchestration.engine.claims import claim_jobs
from orchestration.services import (
    JobSpec,
    batch_create,
    job_create,
    job_run_now,
    jobs_enqueue,
    resource_set_limits,
    run_available_jobs,
)
from tests.e2e import test_browser_live as shared
from tests.e2e import ui_providers
from tests.integration.live.scenarios import login_cookie

pytestmark = [pytest.mark.e2e]

browser = shared.browser
server = shared.server
OUT = Path(__file__).resolve().parents[2] / "docs" / "ui"
UI = ui_providers.MARKETPLACE


def test_take_the_ui_guide_screenshots(browser, server, tx_tenant_a):
    resource_set_limits(key=UI, concurrency=1, rate_per_minute=None)
    specs = [
        *(JobSpec(marketplace=UI, action="publish", sku=f"JACKET-{i:03}") for i in range(3)),
        *(JobSpec(marketplace=UI, action="publish", sku=f"BOOTS-{i:03}",
                  params={"fail_steps": ["upload"]}) for i in range(2)),
        JobSpec(marketplace=UI, action="publish", sku="SCARF-001", max_retries=0,
                params={"fail_steps": ["upload"]}),
    ]  # fmt: skip
    batch = batch_create(name="Winter collection on uitest", jobs=specs, start=False)
    with override_settings(ORCHESTRATION={"RETRY_BASE_SECONDS": 90, "RETRY_MAX_SECONDS": 300}):
        jobs_enqueue(job_ids=list(batch.jobs.values_list("pk", flat=True)))
        run_available_jobs()
    failed = batch.jobs.get(sku="SCARF-001")
    running = job_create(marketplace=UI, action="publish", sku="HAT-001")
    reserved = job_create(marketplace=UI, action="publish", sku="GLOVES-001")
    claim_jobs(limit=1)
    job_run_now(job_id=reserved.pk)

    OUT.mkdir(parents=True, exist_ok=True)
    page = shared._page(browser, server, login_cookie(tx_tenant_a, "ui-guide"))
    page.set_viewport_size({"width": 1400, "height": 900})
    shots = {
        "batch-list": "/admin/orchestration/batch/",
        "batch-page": f"/admin/orchestration/batch/{batch.pk}/change/",
        "job-list": "/admin/orchestration/marketplacejob/",
        "job-page-failed": f"/admin/orchestration/marketplacejob/{failed.pk}/change/",
        "job-page-run-now": f"/admin/orchestration/marketplacejob/{reserved.pk}/change/",
        "dashboard": "/dashboard/",
        "start-batch": "/admin/orchestration/batch/add/",
    }
    for name, path in shots.items():
        page.goto(server.url(path=path))
        if name != "start-batch":
            expect(page.locator("[data-live-status]").first).to_have_text("● live")
        page.wait_for_timeout(600)  # relative times formatted, bars settled
        page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
    assert running.pk
    page.context.close()
