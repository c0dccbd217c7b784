"""The operator's admin: staff actions are audited (shown on the job's and batch's pages),
"… all matching" becomes an operation (small ones finish in the request, large ones show
their progress page), schedules are edited with a preview and a field error for bad cron."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from operations import services as operations
from operations.models import Operation
from orchestration.models import MarketplaceJob
from orchestration.services import batch_cancel, batch_create
from scheduler.models import Schedule
from tests.helpers import staff_client

JOBS = "/admin/orchestration/marketplacejob/"


@pytest.fixture
def client(tenant_a):
    return staff_client(tenant_a, "ops-admin")


def _cancelled(engine, n):
    batch = batch_create(name="b", jobs=[engine.spec() for _ in range(n)])
    batch_cancel(batch_id=batch.pk)
    return batch


def test_job_actions_are_audited_and_shown_on_the_job_page(engine, client):
    batch = _cancelled(engine, 2)
    first, second = MarketplaceJob.objects.filter(batch=batch).order_by("pk")
    control = reverse("tenant_admin:orchestration_job_control", args=[first.pk, "retry"])
    assert client.post(control).status_code == 302
    client.post(JOBS, {"action": "retry", "_selected_action": [second.pk]})
    entries = list(
        AuditEntry.objects.order_by("id").values_list("actor", "door", "action", "targets")
    )
    assert entries == [
        ("ops-admin", "admin", "job.retry", [["job", str(first.pk)]]),
        ("ops-admin", "admin", "job.retry", [["job", str(second.pk)]]),
    ]
    page = client.get(f"{JOBS}{first.pk}/change/")
    assert page.status_code == 200
    assert 'data-audit="job:' in page.text and "job.retry" in page.text
    # A refused action records nothing.
    client.post(reverse("tenant_admin:orchestration_job_control", args=[first.pk, "retry"]))
    assert AuditEntry.objects.count() == 2


def test_batch_cancel_is_audited_on_the_batch_page(engine, client):
    batch = batch_create(name="b", jobs=[engine.spec()])
    url = reverse("tenant_admin:orchestration_batch_control", args=[batch.pk, "cancel"])
    assert client.post(url).status_code == 302
    assert AuditEntry.objects.get().action == "batch.cancel"
    page = client.get(f"/admin/orchestration/batch/{batch.pk}/change/")
    assert "batch.cancel" in page.text


def test_small_bulk_retry_finishes_in_the_request(engine, client):
    batch = _cancelled(engine, 3)
    url = reverse("tenant_admin:orchestration_job_bulk", args=["retry"])
    query = f"batch={batch.pk}"
    confirm = client.get(url, {"_changelist_filters": query})
    assert "<strong>3</strong> jobs" in confirm.text
    done = client.post(url, {"confirm": "1", "_changelist_filters": query})
    assert done.status_code == 302 and "/operations/" not in done["Location"]
    operation = Operation.objects.get()
    assert (operation.status, operation.succeeded, operation.job_filter) == (
        "done",
        3,
        {"batch": batch.pk, "status": ["cancelled", "failed"]},
    )
    assert AuditEntry.objects.get().action == "jobs.retry"


def test_large_bulk_goes_on_in_the_background(engine, client, monkeypatch):
    monkeypatch.setattr(operations, "INLINE_MAX", 2)
    batch = _cancelled(engine, 3)
    url = reverse("tenant_admin:orchestration_job_bulk", args=["run_now"])
    done = client.post(url, {"confirm": "1", "_changelist_filters": f"batch={batch.pk}"})
    operation = Operation.objects.get()
    assert done["Location"] == f"/admin/operations/operation/{operation.pk}/change/"
    page = client.get(done["Location"])
    assert page.status_code == 200 and "0 of 3" in page.text and "data-live-poll-url" in page.text
    assert 'id="operation-stop"' in page.text
    operations.operation_run(operation_id=operation.pk)
    fragment = client.get(f"/admin/operations/operation/{operation.pk}/progress/")
    assert "3 of 3" in fragment.text and "Done" in fragment.text
    assert set(MarketplaceJob.objects.filter(batch=batch).values_list("direct", flat=True)) == {
        True
    }


def test_a_bulk_filter_it_cannot_carry_is_refused(engine, client):
    url = reverse("tenant_admin:orchestration_job_bulk", args=["retry"])
    done = client.post(url, {"confirm": "1", "_changelist_filters": "retry_count__gte=1"})
    assert done.status_code == 302
    assert not Operation.objects.exists() and not AuditEntry.objects.exists()


def test_viewer_cannot_stop_operations(engine, tenant_a):
    batch = _cancelled(engine, 1)
    from audit.services import Actor

    operation = operations.operation_create(
        kind="retry", job_filter={"batch": batch.pk}, actor=Actor("x", "command")
    )
    viewer = staff_client(tenant_a, "viewer-1", superuser=False)
    stop = f"/admin/operations/operation/{operation.pk}/stop/"
    assert viewer.post(stop).status_code == 403
    operation.refresh_from_db()
    assert not operation.cancel_requested


def _schedule_form(**overrides):
    data = {
        "name": "hourly sync",
        "action": "sync",
        "marketplaces": ["ebay"],
        "all_products": "on",
        "skus": "",
        "priority": "0",
        "cron": "0 * * * *",
        "every_minutes": "",
        "timezone": "Europe/Paris",
        "active": "on",
    }
    data.update(overrides)
    return data


def test_schedule_admin_validates_and_previews(tenant_a, client):
    add = "/admin/scheduler/schedule/add/"
    bad = client.post(add, _schedule_form(cron="0 25 * * *"))
    assert bad.status_code == 200 and "bad cron expression" in bad.text
    assert not Schedule.objects.exists()
    tz = client.post(add, _schedule_form(timezone="Nowhere/City"))
    assert "unknown timezone" in tz.text
    saved = client.post(add, _schedule_form())
    assert saved.status_code == 302
    schedule = Schedule.objects.get()
    assert schedule.next_run_at is not None and schedule.created_by == "ops-admin"
    page = client.get(f"/admin/scheduler/schedule/{schedule.pk}/change/")
    preview = re.search(r'<ol class="schedule-preview">(.*?)</ol>', page.text, re.S)
    assert preview is not None and preview.group(1).count("<li>") == 5
    assert 'id="schedule-run-now"' in page.text
    assert AuditEntry.objects.get().action == "schedule.create"


def test_schedule_admin_takes_a_stock_plan(tenant_a, client):
    add = "/admin/scheduler/schedule/add/"
    plan = {"action": "plan", "name": "weekly jeans plan", "all_products": ""}
    missing = client.post(add, _schedule_form(**plan, plan='{"preset": "standard"}'))
    assert missing.status_code == 200 and "invalid plan: category" in missing.text
    saved = client.post(
        add, _schedule_form(**plan, plan='{"preset": "standard", "category": "Jeans"}')
    )
    assert saved.status_code == 302
    schedule = Schedule.objects.get()
    assert schedule.plan == {"preset": "standard", "category": "Jeans"}
    listing = client.get("/admin/scheduler/schedule/")
    assert "stock plan · standard · Jeans" in listing.text


def test_dashboard_shows_schedules_and_operations(engine, client, staff_actor, products):
    from scheduler.services import schedule_save

    schedule_save(actor=staff_actor, name="every quarter", action="sync", marketplaces=["ebay"],
                  all_products=True, skus="", priority=0, sequential=False, cron="",
                  every_minutes=15, timezone="UTC", active=True)  # fmt: skip
    batch = _cancelled(engine, 2)
    from audit.services import Actor

    operation = operations.operation_create(
        kind="retry", job_filter={"batch": batch.pk}, actor=Actor("ops", "command")
    )
    page = client.get("/dashboard/")
    assert page.status_code == 200
    assert "every quarter" in page.text and f'data-operation="{operation.pk}"' in page.text
    panel = client.get("/dashboard/panels/operations/")
    assert "0 of 2" in panel.text
    operations.operation_run(operation_id=operation.pk)
    assert "2 of 2" in client.get("/dashboard/panels/operations/").text
    assert "every 15 min" in client.get("/dashboard/panels/schedules/").text
