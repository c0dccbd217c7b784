"""The admin's "Import products" page in Chromium: a multi-part upload with one dropped
part (retried), then the import job followed live to its report; and a resume after the
page was reloaded mid-upload (only the missing parts are sent again)."""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest
from playwright.sync_api import expect, sync_playwright

from marketplaces.models import Product
from tests.integration.live.scenarios import login_cookie
from tests.integration.live.servers import start_server
from tests.integration.uploads.support import products_csv
from uploads.models import Upload

pytestmark = pytest.mark.e2e

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PART = 1024


@pytest.fixture(scope="module")
def uploads_env(tmp_path_factory):
    values = {
        "UPLOADS_MIN_PART_SIZE": str(PART),
        "UPLOADS_DEFAULT_PART_SIZE": str(PART),
        "UPLOADS_ROOT": str(tmp_path_factory.mktemp("uploads")),
    }
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield values
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def server(uploads_env, django_db_setup, tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("uploads-browser") / "uvicorn.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop on this thread
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


def _page(browser, server, cookie: str):
    context = browser.new_context()
    name, value = cookie.split("=", 1)
    context.add_cookies([{"name": name, "value": value, "url": server.url()}])
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page


def _part_puts(page) -> Counter:
    """PUTs of parts that reached the server with an answer, by part number."""
    answered: Counter = Counter()

    def on_response(response):
        if response.request.method == "PUT" and "/parts/" in response.url:
            answered[int(response.url.rsplit("/", 1)[1])] += 1

    page.on("response", on_response)
    return answered


def _pump_events_until(page, condition, timeout: float = 30) -> None:
    """Playwright's sync API delivers events while it waits: wait in small steps until the
    listeners have seen what the page already did."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, page.text_content("#import-status")
        page.wait_for_timeout(50)


def test_the_import_page_uploads_in_parts_retries_a_dropped_part_and_shows_the_job(
    browser, server, tx_tenant_a, start_cluster, tmp_path
):
    data = products_csv(40, prefix="WEB", bad_every=20)  # ~4 KiB: 4+ parts; 2 rows rejected
    path = tmp_path / "catalogue.csv"
    path.write_bytes(data)
    start_cluster(workers=1, DRAIN_SECONDS=5)
    page = _page(browser, server, login_cookie(tx_tenant_a, "import-staff"))
    answered = _part_puts(page)
    dropped: list[str] = []

    def drop_once(route):
        if not dropped:
            dropped.append(route.request.url)
            route.abort("connectionreset")  # the network fails for this request only
        else:
            route.continue_()

    page.route("**/api/uploads/*/parts/2", drop_once)
    page.goto(server.url(path="/admin/marketplaces/product/"))
    page.click("a.import-products-link")  # linked from the product list
    expect(page).to_have_url(server.url(path="/admin/uploads/upload/import/"))
    page.set_input_files("#import-file", str(path))
    page.click("#import-start")

    expect(page.locator("#import-job-status")).to_have_text("completed", timeout=90_000)
    expect(page.locator("#import-percent")).to_have_text("100%")
    expect(page.locator("#report-read")).to_have_text("40")
    expect(page.locator("#report-rejected")).to_have_text("2")
    expect(page.locator("#report-imported")).to_have_text("38 (38 / 0 / 0)")
    assert dropped  # part 2 failed once…
    parts = len(data) // PART + 1
    _pump_events_until(page, lambda: len(answered) == parts)
    assert answered == Counter({n: 1 for n in range(1, parts + 1)})  # …and was sent again
    upload = Upload.objects.get()
    assert (upload.state, upload.part_count) == ("completed", parts)
    assert Product.objects.filter(sku__startswith="WEB-").count() == 38
    job_href = page.get_attribute("#import-job-link", "href")
    assert job_href.endswith(f"/admin/orchestration/marketplacejob/{upload.import_job_id}/change/")
    csv_link = page.locator("#import-report-link")
    with page.expect_download() as download:
        csv_link.click()
    rows = download.value.path().read_text().splitlines()
    assert rows[0] == "line,sku,errors" and len(rows) == 3
    stored = page.evaluate("Object.keys(localStorage)")
    assert not [k for k in stored if k.startswith("upload:")]  # nothing left to resume
    page.context.close()


def _parts_sent_by_this_page(page) -> list[int]:
    """Part PUTs this document finished (resource timing: a reload starts a new list)."""
    names = page.evaluate(
        "performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => n.includes('/parts/'))"
    )
    return sorted(int(name.rsplit("/", 1)[1]) for name in names)


def test_the_import_page_resumes_after_a_reload(browser, server, tx_tenant_a, tmp_path):
    data = os.urandom(6 * PART + 10)
    path = tmp_path / "feed.jsonl"
    path.write_bytes(data)
    page = _page(browser, server, login_cookie(tx_tenant_a, "resume-staff"))
    page.route("**/api/uploads/*/parts/4", lambda route: None)  # never answered: stuck
    page.goto(server.url(path="/admin/uploads/upload/import/"))
    page.set_input_files("#import-file", str(path))
    page.click("#import-start")
    expect(page.locator("#import-status")).to_have_text("Sending part 4 of 7…")
    assert _parts_sent_by_this_page(page) == [1, 2, 3]

    # Reload while part 4 is still held: the navigation cancels it, so the server never
    # gets it. (Unrouting first would let the held request through, and the old page
    # would race on to part 5 before the reload.)
    page.reload()
    page.unroute("**/api/uploads/*/parts/4")
    expect(page.locator("#import-resume")).to_contain_text("feed.jsonl was interrupted")
    # Every part PUT this page sends from now on (request events, unlike resource timing
    # entries, are never dropped).
    resent: list[int] = []
    page.on(
        "request",
        lambda request: (
            resent.append(int(request.url.rsplit("/", 1)[1]))
            if request.method == "PUT" and "/parts/" in request.url
            else None
        ),
    )
    page.set_input_files("#import-file", str(path))  # the same file again
    page.click("#import-start")
    # No worker runs here: the import job stays queued; the upload itself is complete.
    expect(page.locator("#import-job")).to_be_visible(timeout=30_000)
    expect(page.locator("#import-job-status")).to_have_text("queued")
    # Parts 1-3 were not sent again; the rest were, once each.
    assert sorted(resent) == [4, 5, 6, 7], resent
    upload = Upload.objects.get()
    assert upload.state == "completed"
    assert upload.import_job_id is not None
    page.context.close()


def test_the_import_button_waits_for_the_script(browser, server, tx_tenant_a):
    """Before import.js runs, a click would submit the form natively (a reload that loses the
    picked file, as a busy machine showed): the button is disabled until the script is ready."""
    name, value = login_cookie(tx_tenant_a, "early-staff").split("=", 1)
    context = browser.new_context(java_script_enabled=False)
    context.add_cookies([{"name": name, "value": value, "url": server.url()}])
    page = context.new_page()
    page.goto(server.url(path="/admin/uploads/upload/import/"))
    expect(page.locator("#import-start")).to_be_disabled()
    context.close()
    page = _page(browser, server, login_cookie(tx_tenant_a, "early-staff"))
    page.goto(server.url(path="/admin/uploads/upload/import/"))
    expect(page.locator("#import-start")).to_be_enabled()
    page.context.close()
