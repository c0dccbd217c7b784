"""/api/webhooks: endpoints CRUD (secret shown once), URL refusal, delivery log, redeliver, ping."""

from __future__ import annotations

import pytest
from django.test import override_settings

from api.services import token_create
from orchestration.services import job_create, job_execute_now
from tests.engine_providers import MARKETPLACE
from tests.integration.api.conftest import ApiClient, assert_error
from tests.integration.webhooks.conftest import params
from webhooks.models import WebhookDelivery, WebhookEndpoint

BASE = "/api/webhooks"


@pytest.fixture
def api(hooks):
    _token, raw = token_create(name="hooks writer")
    return ApiClient("alpha.localhost", raw)


@pytest.fixture
def reader(hooks):
    _token, raw = token_create(name="hooks reader", read_only=True)
    return ApiClient("alpha.localhost", raw)


def _create(api, **body):
    response = api.post(f"{BASE}/endpoints", {"url": "http://127.0.0.1:9/hooks", **body})
    assert response.status_code == 201, response.content
    return response.json()


def test_create_shows_the_secret_once(api):
    created = _create(api, event_types=["job.run.failed"], description="ERP")
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["job.run.failed"] and created["active"] is True
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    assert endpoint.secret == created["secret"]
    for response in (api.get(f"{BASE}/endpoints"), api.get(f"{BASE}/endpoints/{endpoint.pk}")):
        assert response.status_code == 200
        assert created["secret"] not in response.content.decode()
        assert b'"secret"' not in response.content
    rotated = api.post(f"{BASE}/endpoints/{endpoint.pk}/rotate-secret").json()
    assert rotated["secret"] != created["secret"]
    endpoint.refresh_from_db()
    assert endpoint.secret == rotated["secret"]


def test_bad_input_is_a_clear_422_and_stores_nothing(api):
    with override_settings(WEBHOOKS_ALLOW_PRIVATE_URLS=False):
        body = assert_error(api.post(f"{BASE}/endpoints", {"url": "http://10.1.2.3/x"}),
                            422, "validation_error")  # fmt: skip
    assert "private" in body["message"]
    bad = api.post(f"{BASE}/endpoints", {"url": "http://127.0.0.1:9/", "event_types": ["nope"]})
    assert "unknown event type" in assert_error(bad, 422, "validation_error")["message"]
    assert_error(api.post(f"{BASE}/endpoints", {"url": ""}), 422, "validation_error")
    assert not WebhookEndpoint.objects.exists()
    created = _create(api)
    with override_settings(WEBHOOKS_ALLOW_PRIVATE_URLS=False):
        patch = api.call("patch", f"{BASE}/endpoints/{created['id']}", {"url": "http://[::1]/"})
    assert_error(patch, 422, "validation_error")
    assert WebhookEndpoint.objects.get().url == "http://127.0.0.1:9/hooks"


def test_read_only_callers_cannot_change_anything(reader, api):
    created = _create(api)
    assert reader.get(f"{BASE}/endpoints").status_code == 200
    assert_error(reader.post(f"{BASE}/endpoints", {"url": "http://127.0.0.1:9/"}), 403, "forbidden")
    assert_error(reader.post(f"{BASE}/endpoints/{created['id']}/ping"), 403, "forbidden")
    assert_error(reader.delete(f"{BASE}/endpoints/{created['id']}"), 403, "forbidden")
    assert_error(reader.post(f"{BASE}/deliveries/redeliver", {"ids": [1]}), 403, "forbidden")
    assert WebhookEndpoint.objects.count() == 1


def test_update_disable_enable_and_delete(api):
    created = _create(api)
    url = f"{BASE}/endpoints/{created['id']}"
    off = api.call("patch", url, {"active": False, "description": "paused"}).json()
    assert off["active"] is False and off["description"] == "paused"
    assert api.call("patch", url, {"active": True}).json()["active"] is True
    assert api.delete(url).status_code == 204
    assert_error(api.get(url), 404, "not_found")
    from audit.models import AuditEntry

    actions = list(AuditEntry.objects.order_by("pk").values_list("action", flat=True))
    assert actions == ["webhook.create", "webhook.update", "webhook.update", "webhook.delete"]


def test_delivery_log_detail_redeliver_and_ping(api, hooks):
    created = _create(api)
    job = job_create(marketplace=MARKETPLACE, action="one", params=params(hooks))
    job_execute_now(job_id=job.pk)
    page = api.get(f"{BASE}/deliveries?job={job.pk}").json()
    (item,) = page["items"]
    assert item["event_type"] == "job.run.completed" and item["status"] == "pending"
    assert api.get(f"{BASE}/deliveries?endpoint={created['id']}&status=delivered").json()[
        "items"] == []  # fmt: skip
    detail = api.get(f"{BASE}/deliveries/{item['id']}").json()
    assert detail["payload"]["id"] == item["event_id"] and detail["attempt_log"] == []
    WebhookDelivery.objects.filter(pk=item["id"]).update(status="failed")
    answer = api.post(f"{BASE}/deliveries/redeliver", {"ids": [item["id"]]})
    assert answer.status_code == 202 and answer.json() == {"queued": 1}
    assert WebhookDelivery.objects.get(pk=item["id"]).status == "pending"
    missing = api.post(f"{BASE}/deliveries/redeliver", {"ids": [item["id"], 10**9]})
    assert assert_error(missing, 404, "not_found")["details"] == {"ids": [10**9]}
    ping = api.post(f"{BASE}/endpoints/{created['id']}/ping")
    assert ping.status_code == 202 and ping.json()["event_type"] == "ping"
    api.call("patch", f"{BASE}/endpoints/{created['id']}", {"active": False})
    assert_error(api.post(f"{BASE}/endpoints/{created['id']}/ping"), 409, "conflict")
    assert_error(api.get(f"{BASE}/deliveries/{10**9}"), 404, "not_found")
    assert_error(api.get(f"{BASE}/deliveries?status=weird"), 422, "validation_error")
