"""The staff dashboard (per tenant) and the platform roll-up (public schema)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context, tenant_context

from orchestration.models import MarketplaceJob
from orchestration.services import job_create, resource_pause, run_available_jobs
from tests.engine_providers import BRIDGE, MARKETPLACE, set_faults
from tests.factories import UserFactory
from tests.helpers import staff_client
from tests.integration.live.scenarios import make_staff


def _client_for(tenant, user) -> Client:
    with tenant_context(tenant):
        client = Client(HTTP_HOST=tenant.get_primary_domain().domain)
        client.force_login(user)
    return client


@pytest.fixture
def params(tmp_path):
    return {"ledger": str(tmp_path / "ledger.jsonl"), "faults": str(tmp_path / "faults.json")}


def _failed_job(params) -> MarketplaceJob:
    set_faults(params["faults"], {"only": {"mode": "permanent", "times": 1}})
    job = job_create(marketplace=MARKETPLACE, action="one", sku="DASH-FAIL", params=params)
    run_available_jobs()
    return MarketplaceJob.objects.get(pk=job.pk)


def test_dashboard_needs_a_staff_login_with_view_permission(tenant_a):
    anonymous = Client(HTTP_HOST="alpha.localhost").get("/dashboard/")
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    bare = _client_for(tenant_a, make_staff(tenant_a, "no-perms", role="bare"))
    connection.set_tenant(tenant_a)
    assert bare.get("/dashboard/").status_code == 403


def test_dashboard_shows_batches_queues_throughput_failures_and_workers(tenant_a, params):
    failed = _failed_job(params)
    done = job_create(marketplace=MARKETPLACE, action="three", params=params)
    run_available_jobs()
    waiting = [job_create(marketplace=BRIDGE, action="one", params=params) for _ in range(3)]
    resource_pause(key=BRIDGE)
    client = staff_client(tenant_a, "dash-staff")
    page = client.get("/dashboard/")
    assert page.status_code == 200
    text = page.text
    assert '"subscribe": "overview"' in text and "orchestration/live.js" in text
    bridge_row = re.search(r'data-resource="testbridge">(.*?)</tr>', text, re.S).group(1)
    assert '<td class="waiting">3</td>' in bridge_row and "paused" in bridge_row
    assert '<td class="running">0 / 1</td>' in bridge_row
    # One step of the failed job and three of the other completed within the hour.
    assert re.search(r'class="steps-per-minute">[\d.]+</b> steps/min \(3 steps\)', text)
    assert 'class="failure-rate">50.0%</b> (1 of 2 runs)' in text
    assert f'data-live-job="{failed.pk}"' in text and "HTTP 400: invalid field in only" in text
    assert f'action="/dashboard/jobs/{failed.pk}/retry/"' in text
    assert re.search(r'<tr class="worker"><td><code>[^<]+</code></td><td>0</td><td>2</td>', text)
    # The completed job and the waiting ones are counted above, never listed as failures.
    listed = re.findall(r'<tr class="failure" data-job="(\d+)"', text)
    assert listed == [str(failed.pk)], (listed, done.pk, [job.pk for job in waiting])
    testmkt_row = re.search(r'data-resource="testmkt">(.*?)</tr>', text, re.S).group(1)
    assert '<td class="waiting">0</td>' in testmkt_row


def test_one_click_retry_from_the_dashboard(tenant_a, params):
    failed = _failed_job(params)
    client = staff_client(tenant_a, "retry-staff")
    answer = client.post(f"/dashboard/jobs/{failed.pk}/retry/", HTTP_X_REQUESTED_WITH="fetch")
    assert answer.status_code == 200
    assert answer.json()["status"] == "queued"
    assert MarketplaceJob.objects.get(pk=failed.pk).status == "queued"
    again = client.post(f"/dashboard/jobs/{failed.pk}/retry/", HTTP_X_REQUESTED_WITH="fetch")
    assert again.status_code == 409
    assert client.get(f"/dashboard/jobs/{failed.pk}/retry/").status_code == 405


def test_read_only_staff_see_the_dashboard_without_buttons(tenant_a, params):
    failed = _failed_job(params)
    viewer = _client_for(tenant_a, make_staff(tenant_a, "dash-viewer", role="viewer"))
    connection.set_tenant(tenant_a)
    page = viewer.get("/dashboard/")
    assert page.status_code == 200 and f'data-live-job="{failed.pk}"' in page.text
    assert "/retry/" not in page.text
    assert viewer.post(f"/dashboard/jobs/{failed.pk}/retry/").status_code == 403
    assert MarketplaceJob.objects.get(pk=failed.pk).status == "failed"
    for panel in ("batches", "queues", "throughput", "failures", "workers"):
        assert viewer.get(f"/dashboard/panels/{panel}/").status_code == 200
    assert viewer.get("/dashboard/panels/secrets/").status_code == 404


def _public_client(username: str, *, superuser: bool) -> Client:
    with schema_context("public"):
        user = UserFactory(username=username, is_superuser=superuser)
        client = Client(HTTP_HOST="localhost")
        client.force_login(user)
    return client


def test_platform_page_rolls_up_every_tenant_for_superusers_only(tenant_a, tenant_b, params):
    with tenant_context(tenant_a):
        _failed_job(params)
        job_create(marketplace=BRIDGE, action="one", params=params)
        alpha_cookie = staff_client(tenant_a, "alpha-admin").cookies["sessionid"].value
    with tenant_context(tenant_b):
        for _ in range(2):
            job_create(marketplace=BRIDGE, action="one", params=params)
    connection.set_schema_to_public()

    page = _public_client("platform-root", superuser=True).get("/platform/")
    assert page.status_code == 200
    rows = dict(re.findall(r'data-schema="(test_\w+)">(.*?)</tr>', page.text, re.S))
    assert '<td class="waiting">1</td>' in rows["test_alpha"]
    assert '<td class="failed">1</td>' in rows["test_alpha"]
    assert '<td class="waiting">2</td>' in rows["test_beta"]
    assert '<td class="failed">0</td>' in rows["test_beta"]

    assert _public_client("platform-staff", superuser=False).get("/platform/").status_code == 403
    # A tenant's staff: their session means nothing on the platform host …
    tenant_staff = Client(HTTP_HOST="localhost")
    tenant_staff.cookies["sessionid"] = alpha_cookie
    response = tenant_staff.get("/platform/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    # … and the page does not exist on a tenant's host.
    assert staff_client(tenant_a, "alpha-admin2").get("/platform/").status_code == 404
