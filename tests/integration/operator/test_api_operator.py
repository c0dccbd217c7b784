"""Schedules and bulk operations over the JSON API: bad input is a 422 in the one error
shape and stores nothing; writes need a writing token and are audited with its name."""

from __future__ import annotations

import pytest

from api.services import token_create
from audit.models import AuditEntry
from operations.models import Operation
from orchestration.models import MarketplaceJob
from orchestration.services import batch_cancel, batch_create
from scheduler.models import Schedule
from tests.integration.api.conftest import ApiClient


@pytest.fixture
def api(tenant_a):
    _token, raw = token_create(name="ops-bot")
    return ApiClient("alpha.localhost", raw)


@pytest.fixture
def reader(tenant_a):
    _token, raw = token_create(name="dash", read_only=True)
    return ApiClient("alpha.localhost", raw)


def _error(response, status, code="validation_error"):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error", "message", "request_id", "details"} and body["error"] == code
    return body


def test_schedule_lifecycle(api, products):
    created = api.post("/api/schedules", {"name": "morning", "action": "sync",
                                          "marketplaces": ["ebay"], "all_products": True,
                                          "cron": "0 6 * * 1-5", "timezone": "Europe/Paris"})  # fmt: skip
    assert created.status_code == 201, created.content
    body = created.json()
    assert len(body["next_runs"]) == 5 and body["next_run_at"] is not None
    sid = body["id"]
    changed = api.call("patch", f"/api/schedules/{sid}", {"cron": "", "every_minutes": 30})
    assert changed.status_code == 200 and changed.json()["every_minutes"] == 30
    fired = api.post(f"/api/schedules/{sid}/run")
    assert fired.status_code == 200 and fired.json()["outcome"] == "started"
    assert api.post(f"/api/schedules/{sid}/pause").json()["active"] is False
    assert api.delete(f"/api/schedules/{sid}").status_code == 204
    entries = list(AuditEntry.objects.order_by("id").values_list("action", "door"))
    assert entries == [("schedule.create", "api:ops-bot"), ("schedule.change", "api:ops-bot"),
                       ("schedule.run_now", "api:ops-bot"), ("schedule.pause", "api:ops-bot"),
                       ("schedule.delete", "api:ops-bot")]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "0 99 * * *"}, "cron"),
        ({"cron": "", "every_minutes": None}, "cron"),
        ({"timezone": "Nowhere/Else"}, "timezone"),
        ({"marketplaces": ["nowhere"]}, "marketplaces"),
        ({"action": "explode"}, "action"),
    ],
)
def test_bad_schedules_are_422(api, body, field):
    base = {"name": "x", "marketplaces": ["ebay"], "all_products": True, "cron": "0 6 * * *"}
    answer = _error(api.post("/api/schedules", {**base, **body}), 422)
    assert answer["details"] == {"field": field}
    assert not Schedule.objects.exists() and not AuditEntry.objects.exists()


def test_schedule_errors(api, reader):
    _error(api.get("/api/schedules/9999"), 404, "not_found")
    _error(reader.post("/api/schedules", {"name": "x", "marketplaces": ["ebay"],
                                          "all_products": True, "cron": "0 6 * * *"}), 403,
           "forbidden")  # fmt: skip
    _error(api.post("/api/schedules", {"name": "x"}), 422)  # pydantic: marketplaces missing


def test_bulk_operation_over_the_api(api, reader, engine):
    batch = batch_create(name="b", jobs=[engine.spec() for _ in range(3)])
    batch_cancel(batch_id=batch.pk)
    started = api.post("/api/operations", {"kind": "retry",
                                           "filter": {"status": ["cancelled"], "batch": batch.pk}})  # fmt: skip
    assert started.status_code == 202, started.content
    op = started.json()
    assert (op["status"], op["total"], op["door"]) == ("pending", 3, "api:ops-bot")
    from operations.services import operation_run

    operation_run(operation_id=op["id"])  # the worker's part
    done = reader.get(f"/api/operations/{op['id']}").json()
    assert (done["status"], done["succeeded"], done["percent"]) == ("done", 3, 100)
    assert set(MarketplaceJob.objects.filter(batch=batch).values_list("status", flat=True)) == {
        "queued"
    }
    _error(api.post(f"/api/operations/{op['id']}/cancel"), 409, "conflict")
    _error(api.post("/api/operations", {"kind": "retry", "filter": {"status": ["zzz"]}}), 422)
    _error(api.post("/api/operations", {"kind": "nuke", "filter": {}}), 422)
    _error(reader.post("/api/operations", {"kind": "retry", "filter": {}}), 403, "forbidden")
    _error(api.get("/api/operations/424242"), 404, "not_found")
    assert Operation.objects.count() == 1
