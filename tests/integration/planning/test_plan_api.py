"""POST /api/plans and GET /api/plans/{id}: validated before anything is queued."""

from __future__ import annotations

import pytest

from api.services import token_create
from orchestration.models import MarketplaceJob
from tests.integration.planning.conftest import Api


@pytest.fixture
def api(tenant_a):
    _token, raw = token_create(name="planner")
    return Api(token=raw)


def assert_422(response, *fields):
    assert response.status_code == 422, response.content[:500]
    body = response.json()
    assert body["error"] == "validation_error" and body["message"]
    assert body["request_id"] and body["request_id"] == response["X-Request-ID"]
    assert sorted(d["field"] for d in body["details"]) == sorted(fields), body["details"]
    assert MarketplaceJob.objects.count() == 0  # nothing queued
    return body


def test_a_horizon_of_100_weeks_is_refused_with_the_field_and_a_request_id(api):
    body = assert_422(
        api.post("/api/plans", {"preset": "standard", "category": "Jackets", "horizon_weeks": 100}),
        "horizon_weeks",
    )
    assert "52" in body["details"][0]["message"]


def test_a_season_starting_after_it_ends_is_refused(api):
    body = assert_422(
        api.post(
            "/api/plans",
            {
                "preset": "fast-fashion",
                "category": "Jackets",
                "overrides": {"season_start": "2027-03-01", "season_end": "2027-02-01"},
            },
        ),
        "season_end",
    )
    assert "season_start must be before season_end" in body["details"][0]["message"]


def test_other_bad_fields_are_each_named(api):
    assert_422(
        api.post(
            "/api/plans",
            {
                "preset": "luxury",
                "strategy": "daily",
                "dc_holdback": 1.5,
                "marketplaces": ["ebay", "amazon"],
                "category": "",
            },
        ),
        *("strategy", "dc_holdback", "marketplaces.1", "category"),
    )
    assert_422(api.post("/api/plans", {"preset": "bespoke", "category": "Jackets"}), "preset")
    assert_422(api.post("/api/plans", {"horizon_weeks": "soon"}), "horizon_weeks")


def test_a_preset_with_overrides_queues_one_plan_and_reads_back(api):
    response = api.post(
        "/api/plans", {"preset": "standard", "category": "Jackets", "marketplaces": ["ebay"],
                       "overrides": {"horizon_weeks": 8}},
    )  # fmt: skip
    assert response.status_code == 201, response.content
    body = response.json()
    job = MarketplaceJob.objects.get()
    assert body["job_id"] == job.pk and body["status"] == "queued"
    assert (job.marketplace, job.action, job.concurrency_key) == (
        "planning",
        "plan",
        "planning:Jackets",
    )
    assert job.params["horizon_weeks"] == 8 and job.params["dc_holdback"] == 0.45
    assert job.params["multiplier"] == 1.2 and job.params["created_by"] == "api:planner"

    detail = api.get(f"/api/plans/{job.pk}").json()
    assert detail["status"] == "queued" and detail["params"]["category"] == "Jackets"
    assert [s["step"] for s in detail["steps"]] == [
        "assemble_context", "forecast_demand", "compute_inventory", "push_quantities",
    ]  # fmt: skip
    assert api.get("/api/plans").json()[0]["id"] == job.pk
    assert api.get("/api/plans/presets").json()["standard"]["dc_holdback"] == 0.45


def test_unknown_plans_and_read_only_callers(api, tenant_a):
    missing = api.get("/api/plans/999999")
    assert missing.status_code == 404 and missing.json()["request_id"]
    _token, raw = token_create(name="reader", read_only=True)
    refused = Api(token=raw).post("/api/plans", {"preset": "standard", "category": "Jackets"})
    assert refused.status_code == 403
    assert MarketplaceJob.objects.count() == 0
