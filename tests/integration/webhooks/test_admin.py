"""Webhooks in the tenant admin: the secret shown once, URL refusal, the delivery log per
endpoint and per job (the job page), redeliver and ping actions."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from orchestration.services import job_create, job_execute_now
from tests.engine_providers import MARKETPLACE
from tests.helpers import staff_client
from tests.integration.webhooks.conftest import params
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEndpoint

ADD = "tenant_admin:webhooks_webhookendpoint_add"


@pytest.fixture
def staff(hooks, tenant_a):
    return staff_client(tenant_a, "hooks-staff")


def test_creating_shows_the_secret_once_and_never_again(staff):
    answer = staff.post(reverse(ADD), {"url": "http://127.0.0.1:9/hooks", "description": "ERP",
                                       "event_types": ["job.run.completed"], "active": "on"})  # fmt: skip
    endpoint = WebhookEndpoint.objects.get()
    page = answer.content.decode()
    assert answer.status_code == 200 and endpoint.secret in page
    assert "no-store" in answer["Cache-Control"]
    assert endpoint.event_types == ["job.run.completed"] and endpoint.created_by == "hooks-staff"
    change = reverse("tenant_admin:webhooks_webhookendpoint_change", args=[endpoint.pk])
    for url in (change, reverse("tenant_admin:webhooks_webhookendpoint_changelist")):
        shown = staff.get(url)
        assert shown.status_code == 200 and endpoint.secret not in shown.content.decode()


def test_private_url_is_refused_in_the_form(staff):
    with override_settings(WEBHOOKS_ALLOW_PRIVATE_URLS=False):
        answer = staff.post(reverse(ADD), {"url": "http://192.168.1.10/hooks", "active": "on"})
    assert answer.status_code == 200 and "URL refused" in answer.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_delivery_log_job_page_redeliver_and_ping(staff, hooks):
    endpoint = services.endpoint_create(url="http://127.0.0.1:9/hooks").endpoint
    job = job_create(marketplace=MARKETPLACE, action="one", params=params(hooks))
    job_execute_now(job_id=job.pk)
    row = WebhookDelivery.objects.get()
    # The job page lists the job's deliveries.
    page = staff.get(reverse("tenant_admin:orchestration_marketplacejob_change", args=[job.pk]))
    assert page.status_code == 200
    assert "data-webhook-deliveries" in page.content.decode()
    assert (
        reverse("tenant_admin:webhooks_webhookdelivery_change", args=[row.pk])
        in page.content.decode()
    )
    # The endpoint's delivery log, and one delivery with its payload.
    log = staff.get(reverse("tenant_admin:webhooks_webhookdelivery_changelist")
                    + f"?endpoint__id__exact={endpoint.pk}")  # fmt: skip
    assert log.status_code == 200 and "job.run.completed" in log.content.decode()
    detail = staff.get(reverse("tenant_admin:webhooks_webhookdelivery_change", args=[row.pk]))
    assert detail.status_code == 200 and str(row.event_id) in detail.content.decode()
    assert endpoint.secret not in detail.content.decode()
    # Redeliver (same row, pending again) and ping (a new ping delivery).
    WebhookDelivery.objects.filter(pk=row.pk).update(status="failed")
    staff.post(reverse("tenant_admin:webhooks_webhookdelivery_changelist"),
               {"action": "redeliver", "_selected_action": [row.pk]})  # fmt: skip
    assert WebhookDelivery.objects.get(pk=row.pk).status == "pending"
    staff.post(reverse("tenant_admin:webhooks_webhookendpoint_changelist"),
               {"action": "send_ping", "_selected_action": [endpoint.pk]})  # fmt: skip
    assert WebhookDelivery.objects.filter(event_type="ping", endpoint=endpoint).count() == 1


def test_rotate_shows_the_new_secret_once(staff):
    created = services.endpoint_create(url="http://127.0.0.1:9/hooks")
    answer = staff.post(reverse("tenant_admin:webhooks_webhookendpoint_changelist"),
                        {"action": "rotate_secrets", "_selected_action": [created.endpoint.pk]})  # fmt: skip
    created.endpoint.refresh_from_db()
    assert created.endpoint.secret != created.secret
    assert created.endpoint.secret in answer.content.decode()


def test_a_disabled_endpoint_shows_its_notice(staff):
    endpoint = services.endpoint_create(url="http://127.0.0.1:9/hooks").endpoint
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        active=False,
        disabled_at=timezone.now(),
        disabled_reason="Disabled automatically: failing for a day",
    )
    listing = staff.get(
        reverse("tenant_admin:webhooks_webhookendpoint_changelist")
    ).content.decode()
    assert "Disabled automatically: failing for a day" in listing
    page = staff.get(reverse("tenant_admin:webhooks_webhookendpoint_change", args=[endpoint.pk]))
    assert "Disabled automatically" in page.content.decode()
