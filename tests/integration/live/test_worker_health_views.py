"""Visible health of the worker clusters: the dashboard's workers panel and /platform/.

The rows of ``tenants.WorkerCluster`` (public schema) are what the watchdog writes; here they
are written by hand in each state and the pages must say, in words and in red, which cluster
does not work and why.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from tenants.models import TenantQueue, WorkerCluster
from tests.factories import UserFactory
from tests.helpers import staff_client

STALL_REASON = "a drain has waited 12s for a worker and this cluster started none"
NO_CLUSTER = "No worker cluster is reporting — start <code>manage.py run_workers</code>"


@pytest.fixture(autouse=True)
def still_clock(monkeypatch):
    """Rows are written and pages rendered at one instant: a loaded machine (seconds between
    the two) must not age the rows past what the test wrote."""
    instant = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: instant)


@pytest.fixture
def no_clusters(db):
    """Start from an empty cluster table (rolled back with the test)."""
    WorkerCluster.objects.all().delete()


def _cluster(name: str, *, state: str = "running", beat_age: float = 1, progress_age=None,
             restarts: list[float] = (), reason: str = "", ready: int = 0) -> WorkerCluster:  # fmt: skip
    now = timezone.now()
    return WorkerCluster.objects.create(
        name=name, host=name.partition(":")[0], watchdog_pid=int(name.rpartition(":")[2]),
        cluster_pid=4242, workers=2, state=state, reason=reason,
        started_at=now - timedelta(hours=2), heartbeat_at=now - timedelta(seconds=beat_age),
        last_progress_at=None if progress_age is None else now - timedelta(seconds=progress_age),
        ready_waiting=ready,
        restart_times=[(now - timedelta(seconds=age)).isoformat() for age in restarts],
        restarts_total=len(restarts),
    )  # fmt: skip


def _three_clusters() -> None:
    _cluster("web-1:100", progress_age=4, restarts=[1800, 7200], reason="exited with code 1")
    _cluster("web-2:200", state="stalled", progress_age=95, restarts=[600, 300], ready=3,
             reason=STALL_REASON)  # fmt: skip
    _cluster("web-3:300", beat_age=60, progress_age=70)


def _rows(html: str) -> dict[str, str]:
    rows = re.findall(
        r'<tr class="(cluster[^"]*)" data-cluster="([^"]+)"[^>]*>(.*?)</tr>', html, re.S
    )
    return {name: f"{cls}|{body}" for cls, name, body in rows}


def _cell(row: str, cls: str) -> str:
    return re.sub(r"\s+", " ", re.search(rf'<td class="{cls}">(.*?)</td>', row, re.S).group(1))


def _assert_three_clusters(html: str) -> None:
    rows = _rows(html)
    assert list(rows) == ["web-2:200", "web-3:300", "web-1:100"]  # the broken ones first
    ok, stalled, down = rows["web-1:100"], rows["web-2:200"], rows["web-3:300"]

    assert ok.startswith("cluster|") and 'verdict-ok">ok</span>' in ok
    # Ages are read when the page renders: a slow test machine may add a second or two.
    assert "alive <span" in _cell(ok, "alive") and re.fullmatch(
        r"[4-9] s ago", _cell(ok, "progress")
    )
    # One restart within the hour (the other was two hours ago), with why it happened.
    assert _cell(ok, "restarts").startswith("1 ") and "exited with code 1" in ok

    assert stalled.startswith("cluster cluster-bad|")
    assert 'verdict-stalled">stalled</span>' in stalled and STALL_REASON in stalled
    assert _cell(stalled, "ready") == "3" and _cell(stalled, "restarts").strip() == "2"
    assert re.fullmatch(r"1 min 3\d s ago", _cell(stalled, "progress"))

    assert down.startswith("cluster cluster-bad|")
    assert 'verdict-down">down</span>' in down
    assert re.search(r"its watchdog has not reported for 6\ds", down)
    assert "<strong>not alive</strong>" in _cell(down, "alive")
    assert _cell(down, "restarts").strip() == "0"

    assert (
        "<strong>Not working:</strong> 2 of 3 worker clusters stalled, restarting or down" in html
    )
    assert NO_CLUSTER not in html


def test_workers_panel_shows_each_cluster_verdict_reason_and_restarts(tenant_a, no_clusters):
    _three_clusters()
    client = staff_client(tenant_a, "health-staff")
    panel = client.get("/dashboard/panels/workers/")
    assert panel.status_code == 200
    _assert_three_clusters(panel.text)
    # What the panel showed before stays, below the clusters.
    assert panel.text.index('<table class="clusters">') < panel.text.index("this workspace's runs")
    assert "No worker ran a job of this workspace" in panel.text

    page = client.get("/dashboard/")
    assert page.status_code == 200
    _assert_three_clusters(page.text)
    # Polled every 5 s: a stall (red within ~10 s of it) is on screen well within 30 s.
    assert re.search(r'id="panel-workers" data-live-poll-url="/dashboard/panels/workers/"'
                     r' data-live-poll-seconds="5"', page.text)  # fmt: skip


def test_no_cluster_row_is_said_plainly_in_red(tenant_a, no_clusters):
    client = staff_client(tenant_a, "health-empty")
    panel = client.get("/dashboard/panels/workers/").text
    assert re.search(
        rf'<p class="cluster-alert"[^>]*><strong>Not working:</strong> {NO_CLUSTER}', panel
    )
    assert '<table class="clusters">' not in panel and "this workspace's runs" in panel
    assert NO_CLUSTER in client.get("/dashboard/").text

    # Only clusters stopped by their operator: nothing runs either.
    _cluster("web-1:100", state="stopped")
    panel = client.get("/dashboard/panels/workers/").text
    assert "No worker cluster is running — start <code>manage.py run_workers</code>" in panel
    assert 'verdict-stopped">stopped</span>' in panel and "stopped by its operator" in panel


def test_a_working_cluster_is_not_red(tenant_a, no_clusters):
    _cluster("web-1:100", progress_age=2)
    panel = staff_client(tenant_a, "health-fine").get("/dashboard/panels/workers/").text
    assert "<strong>Working:</strong> 1 worker cluster alive." in panel
    assert "cluster-alert" not in panel and "cluster-bad" not in panel
    assert re.fullmatch(r"\d s ago", _cell(_rows(panel)["web-1:100"], "progress"))


def _platform_client() -> Client:
    with schema_context("public"):
        client = Client(HTTP_HOST="localhost")
        client.force_login(UserFactory(username="health-root", is_superuser=True))
    return client


def test_platform_shows_every_cluster_and_each_tenants_ready_work(tenant_a, tenant_b, no_clusters):
    _three_clusters()
    connection.set_schema_to_public()
    TenantQueue.objects.update_or_create(
        schema_name="test_alpha",
        defaults={"ready_at": timezone.now() - timedelta(seconds=42), "paused": False},
    )
    TenantQueue.objects.update_or_create(schema_name="test_beta", defaults={"ready_at": None})
    client = _platform_client()

    page = client.get("/platform/")
    assert page.status_code == 200
    _assert_three_clusters(page.text)
    tenants = dict(re.findall(r'data-schema="(test_\w+)">(.*?)</tr>', page.text, re.S))
    assert re.fullmatch(r"<b>waiting 4\d s</b>", _cell(tenants["test_alpha"], "ready"))
    assert _cell(tenants["test_beta"], "ready") == "none"
    assert re.search(r'class="ready-tenants">\d+</b>', page.text)
    assert 'data-live-poll-url="/platform/?panel=clusters" data-live-poll-seconds="5"' in page.text

    # The page re-fetches just the clusters.
    fragment = client.get("/platform/?panel=clusters")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    _assert_three_clusters(fragment.text)

    WorkerCluster.objects.all().delete()
    assert NO_CLUSTER in client.get("/platform/?panel=clusters").text
    assert NO_CLUSTER in client.get("/platform/").text


def test_platform_clusters_fragment_is_for_superusers_only(tenant_a, no_clusters):
    _cluster("web-1:100")
    with schema_context("public"):
        client = Client(HTTP_HOST="localhost")
        client.force_login(UserFactory(username="health-staff", is_superuser=False))
    connection.set_schema_to_public()
    assert client.get("/platform/?panel=clusters").status_code == 403
    anonymous = Client(HTTP_HOST="localhost").get("/platform/?panel=clusters")
    assert anonymous.status_code == 302
    assert (
        staff_client(tenant_a, "health-tenant").get("/platform/?panel=clusters").status_code == 404
    )
