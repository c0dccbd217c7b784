"""The JSON API over the engine's services: auth, errors, jobs, batches, products, resources."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client, override_settings

from api.main import api
from api.services import token_create, token_revoke
from orchestration import services
from orchestration.engine import transitions
from orchestration.models import Batch, MarketplaceJob
from orchestration.states import JobStatus
from tests.factories import ProductFactory, UserFactory
from tests.integration.api.conftest import ApiClient, assert_error

pytestmark = pytest.mark.django_db


# --- auth ---------------------------------------------------------------------------------


def test_no_credentials_is_401_json_with_request_id(tenant_a):
    response = Client(HTTP_HOST="alpha.localhost").get("/api/jobs")
    body = assert_error(response, 401, "unauthorized")
    assert response["WWW-Authenticate"] == "Bearer"
    assert len(body["request_id"]) >= 8


def test_a_sane_request_id_is_honoured_on_success_and_error(api_a):
    ok = api_a.get("/api/jobs", HTTP_X_REQUEST_ID="client-req-0001")
    assert ok.status_code == 200 and ok["X-Request-ID"] == "client-req-0001"
    bad = api_a.get("/api/jobs/999999", HTTP_X_REQUEST_ID="client-req-0002")
    assert assert_error(bad, 404, "not_found")["request_id"] == "client-req-0002"
    insane = api_a.get("/api/jobs", HTTP_X_REQUEST_ID="<script>")
    assert insane["X-Request-ID"] != "<script>" and len(insane["X-Request-ID"]) == 32


def test_tokens_are_stored_hashed_and_checked_whole(tenant_a):
    token, raw = token_create(name="erp")
    assert raw not in token.key_hash and token.key_hash != raw
    assert ApiClient("alpha.localhost", raw).get("/api/jobs").status_code == 200
    assert_error(ApiClient("alpha.localhost", raw[:-1] + "x").get("/api/jobs"), 401, "unauthorized")
    assert_error(ApiClient("alpha.localhost", "mpo_zz_").get("/api/jobs"), 401, "unauthorized")
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_another_tenants_token_is_401_on_this_host(tenant_a):
    from django_tenants.utils import schema_context

    with schema_context("test_beta"):
        _token, raw_b = token_create(name="beta's")
    assert_error(ApiClient("alpha.localhost", raw_b).get("/api/jobs"), 401, "unauthorized")
    assert ApiClient("beta.localhost", raw_b).get("/api/jobs").status_code == 200


def test_a_revoked_token_is_refused(tenant_a):
    token, raw = token_create(name="old")
    token_revoke(token_id=token.pk)
    assert_error(ApiClient("alpha.localhost", raw).get("/api/jobs"), 401, "unauthorized")


def test_a_read_only_token_reads_and_cannot_write(reader_a):
    product = ProductFactory()
    assert reader_a.get("/api/products").status_code == 200
    body = {"marketplaces": ["ebay"], "products": {"ids": [product.pk]}}
    assert_error(reader_a.post("/api/jobs", body), 403, "forbidden")
    assert not MarketplaceJob.objects.exists()


def test_staff_session_works_and_viewer_session_is_read_only(tenant_a):
    from tenants.services import grant_view_permissions

    staff = UserFactory(username="api-staff", is_staff=True, is_superuser=True)
    client = Client(HTTP_HOST="alpha.localhost", enforce_csrf_checks=True)
    client.force_login(staff)
    assert client.get("/api/jobs").status_code == 200
    # Unsafe methods from a session need the CSRF token (a browser page has it).
    product = ProductFactory()
    body = {"marketplaces": ["ebay"], "products": {"ids": [product.pk]}}
    refused = client.post("/api/jobs", body, content_type="application/json")
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"

    viewer = UserFactory(username="api-viewer", is_staff=True, is_superuser=False)
    grant_view_permissions(tenant=tenant_a, username="api-viewer", app_labels=("orchestration",))
    viewer_client = Client(HTTP_HOST="alpha.localhost")
    viewer_client.force_login(viewer)
    assert viewer_client.get("/api/jobs").status_code == 200
    created = viewer_client.post("/api/jobs", body, content_type="application/json")
    assert_error(created, 403, "forbidden")


@override_settings(API_RATE_LIMIT="3/m")
def test_rate_limited_callers_get_429_with_retry_after(api_a):
    cache.clear()
    for _ in range(3):
        assert api_a.get("/api/resources").status_code == 200
    limited = api_a.get("/api/resources")
    body = assert_error(limited, 429, "rate_limited")
    assert int(limited["Retry-After"]) >= 1 and body["details"]["retry_after"] >= 1
    cache.clear()


# --- jobs ---------------------------------------------------------------------------------


def test_create_jobs_by_sku_and_id_on_two_marketplaces(api_a):
    p1, p2 = ProductFactory(sku="API-0001"), ProductFactory(sku="API-0002")
    body = {"marketplaces": ["ebay", "etsy"], "products": {"skus": ["api-0001"], "ids": [p2.pk]},
            "priority": 5, "mode": "sequential", "name": "from the ERP"}  # fmt: skip
    response = api_a.post("/api/jobs", body)
    assert response.status_code == 201, response.content
    out = response.json()
    assert out["jobs"] == 4 and len(out["job_ids"]) == 4
    batch = Batch.objects.get(pk=out["batch_id"])
    assert (batch.name, batch.mode, batch.total_jobs) == ("from the ERP", "sequential", 4)
    assert batch.created_by == "api:test writer"
    jobs = MarketplaceJob.objects.filter(pk__in=out["job_ids"]).order_by("sequence")
    assert [(j.product_id, j.marketplace) for j in jobs] == [
        (p1.pk, "ebay"), (p1.pk, "etsy"), (p2.pk, "ebay"), (p2.pk, "etsy")
    ]  # fmt: skip
    assert {j.priority for j in jobs} == {5}
    assert [j.status for j in jobs] == ["queued", "pending", "pending", "pending"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"marketplaces": [], "products": {"all": True}}, "marketplaces"),
        ({"marketplaces": ["ebay"], "products": {"all": True}, "priority": 10**9}, "priority"),
        ({"marketplaces": ["ebay"], "products": {"ids": [-1]}}, "products.ids"),
        ({"marketplaces": ["ebay"], "products": {"all": True}, "mode": "random"}, "mode"),
        ({"marketplaces": ["ebay"]}, "products"),
        ({"marketplaces": ["ebay"], "products": {"skus": ["a\x01b"]}}, "products.skus"),
    ],
)
def test_invalid_job_requests_are_422_with_field_errors(api_a, body, field):
    ProductFactory()
    details = assert_error(api_a.post("/api/jobs", body), 422, "validation_error")["details"]
    assert field in [d["field"] for d in details], details
    assert not MarketplaceJob.objects.exists()


def test_nul_characters_are_refused_before_the_database(api_a):
    body = {"marketplaces": ["ebay"], "products": {"skus": ["a\x00b"]}}
    assert "NUL" in assert_error(api_a.post("/api/jobs", body), 422, "validation_error")["message"]
    assert_error(api_a.get("/api/jobs?sku=%00"), 422, "validation_error")
    too_big = api_a.post("/api/products/bulk", {"products": [{"sku": "x" * 3_000_000}]})
    assert assert_error(too_big, 413, "too_large")["details"]["limit_bytes"] > 0


def test_unknown_products_and_marketplaces_are_422_naming_them(api_a):
    ProductFactory(sku="KNOWN-1")
    unknown = api_a.post("/api/jobs", {"marketplaces": ["ebay"], "products": {"skus": ["NOPE-1"]}})
    assert assert_error(unknown, 422, "validation_error")["details"] == {"unknown_skus": ["NOPE-1"]}
    bad_mkt = {"marketplaces": ["amazon"], "products": {"skus": ["KNOWN-1"]}}
    assert (
        "amazon"
        in assert_error(api_a.post("/api/jobs", bad_mkt), 422, "validation_error")["message"]
    )
    assert not Batch.objects.exists()


def test_too_many_jobs_in_one_request_is_413(api_a, monkeypatch):
    import api.jobs

    monkeypatch.setattr(api.jobs, "MAX_JOBS_PER_REQUEST", 2)
    ProductFactory.create_batch(3)
    response = api_a.post("/api/jobs", {"marketplaces": ["ebay"], "products": {"all": True}})
    assert assert_error(response, 413, "too_large")["details"] == {"limit": 2}


def _one_job(api_a, marketplace="ebay") -> int:
    product = ProductFactory()
    response = api_a.post(
        "/api/jobs", {"marketplaces": [marketplace], "products": {"ids": [product.pk]}}
    )
    assert response.status_code == 201, response.content
    return response.json()["job_ids"][0]


def test_get_a_job_with_tasks_and_runs(api_a):
    job_id = _one_job(api_a)
    body = api_a.get(f"/api/jobs/{job_id}").json()
    assert body["id"] == job_id and body["status"] == "queued"
    assert [t["step_order"] for t in body["tasks"]] == list(range(1, len(body["tasks"]) + 1))
    assert body["tasks"][0]["step_type"] and body["runs"] == []


def test_another_tenants_job_id_is_404(api_a):
    from django.db import connection
    from django_tenants.utils import schema_context

    with schema_context("test_beta"):
        with connection.cursor() as cursor:  # an id alpha has never used
            cursor.execute("SELECT setval(pg_get_serial_sequence("
                           "'orchestration_marketplacejob', 'id'), 5000000)")  # fmt: skip
        product = ProductFactory()
        foreign = services.job_create(marketplace="ebay", action="publish", product_id=product.pk)
    assert foreign.pk > 5_000_000
    assert_error(api_a.get(f"/api/jobs/{foreign.pk}"), 404, "not_found")
    assert_error(api_a.delete(f"/api/jobs/{foreign.pk}"), 404, "not_found")
    assert_error(api_a.post(f"/api/jobs/{foreign.pk}/retry"), 404, "not_found")
    with schema_context("test_beta"):
        assert MarketplaceJob.objects.get(pk=foreign.pk).status == JobStatus.QUEUED


def test_list_jobs_filters_and_pages_with_a_cursor(api_a):
    ProductFactory.create_batch(5)
    created = api_a.post("/api/jobs", {"marketplaces": ["ebay"], "products": {"all": True}}).json()
    api_a.post("/api/jobs", {"marketplaces": ["etsy"], "products": {"all": True}})
    seen, cursor = [], None
    while True:
        page = api_a.get(
            f"/api/jobs?marketplace=ebay&limit=2{'&cursor=' + cursor if cursor else ''}"
        )
        assert page.status_code == 200, page.content
        body = page.json()
        seen += [j["id"] for j in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(created["job_ids"], reverse=True)
    by_batch = api_a.get(f"/api/jobs?batch_id={created['batch_id']}&status=queued").json()
    assert {j["id"] for j in by_batch["items"]} == set(created["job_ids"])
    assert_error(api_a.get("/api/jobs?cursor=!!!"), 422, "validation_error")
    assert_error(api_a.get("/api/jobs?status=bogus"), 422, "validation_error")
    assert_error(api_a.get("/api/jobs?limit=100000"), 422, "validation_error")


def test_cancel_a_queued_job_then_cancel_again_is_409(api_a):
    job_id = _one_job(api_a)
    response = api_a.delete(f"/api/jobs/{job_id}")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    assert_error(api_a.delete(f"/api/jobs/{job_id}"), 409, "conflict")


def test_cancel_a_running_job_asks_it_to_stop(api_a):
    job_id = _one_job(api_a)
    transitions.transition(MarketplaceJob, job_id, JobStatus.RUNNING)
    response = api_a.delete(f"/api/jobs/{job_id}")
    assert response.status_code == 202
    assert response.json()["status"] == "running" and response.json()["cancel_requested"] is True


def test_retry_retry_from_step_and_run_now(api_a):
    job_id = _one_job(api_a)
    assert_error(api_a.post(f"/api/jobs/{job_id}/retry"), 409, "conflict")  # still queued
    api_a.delete(f"/api/jobs/{job_id}")
    retried = api_a.post(f"/api/jobs/{job_id}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    api_a.delete(f"/api/jobs/{job_id}")
    from_step = api_a.post(f"/api/jobs/{job_id}/retry-from-step", {"step_order": 1})
    assert from_step.status_code == 200 and from_step.json()["status"] == "queued"
    assert_error(api_a.post(f"/api/jobs/{job_id}/retry-from-step", {"step_order": 0}), 422,
                 "validation_error")  # fmt: skip
    now = api_a.post(f"/api/jobs/{job_id}/run-now")
    assert now.status_code == 200 and now.json()["direct"] is True


# --- batches ------------------------------------------------------------------------------


def test_batches_get_list_cancel_resume(api_a):
    ProductFactory.create_batch(3)
    created = api_a.post("/api/jobs", {"marketplaces": ["ebay"], "products": {"all": True},
                                       "mode": "sequential"}).json()  # fmt: skip
    batch_id = created["batch_id"]
    body = api_a.get(f"/api/batches/{batch_id}").json()
    assert body["total_jobs"] == 3 and body["progress_percent"] == 0
    assert body["counts"] == {"queued": 1, "pending": 2}
    assert [b["id"] for b in api_a.get("/api/batches").json()["items"]] == [batch_id]
    cancelled = api_a.post(f"/api/batches/{batch_id}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["progress_percent"] == 100
    assert_error(api_a.post(f"/api/batches/{batch_id}/cancel"), 409, "conflict")
    resumed = api_a.post(f"/api/batches/{batch_id}/resume")
    assert resumed.status_code == 200, resumed.content
    assert resumed.json()["counts"].get("queued") == 1
    assert_error(api_a.get("/api/batches/0"), 404, "not_found")


# --- products -----------------------------------------------------------------------------


def test_products_upsert_get_list(api_a):
    put = api_a.put("/api/products/by-sku/NEW-1", {"title": "Jacket", "price": "12.50"})
    assert put.status_code == 200 and put.json()["created"] == 1
    again = api_a.put("/api/products/by-sku/NEW-1", {"title": "Jacket v2", "price": "13.00"})
    assert again.json() == {"created": 0, "updated": 1, "ids": put.json()["ids"]}
    product = api_a.get(f"/api/products/{put.json()['ids'][0]}").json()
    assert (product["title"], product["price"]) == ("Jacket v2", "13.00")
    bulk = api_a.post("/api/products/bulk", {"products": [
        {"sku": "NEW-1", "title": "Jacket v3", "price": "14"},
        {"sku": "NEW-2", "title": "Scarf", "price": "5", "quantity": 3},
    ]})  # fmt: skip
    assert bulk.status_code == 200 and (bulk.json()["created"], bulk.json()["updated"]) == (1, 1)
    listed = api_a.get("/api/products?sku_prefix=new-").json()
    assert sorted(p["sku"] for p in listed["items"]) == ["NEW-1", "NEW-2"]


def test_bad_products_are_422_and_nothing_is_written(api_a):
    ProductFactory(sku="KEEP-1", title="kept")
    bad_price = api_a.put("/api/products/by-sku/KEEP-1", {"title": "x", "price": "-1"})
    assert "price" in [
        d["field"] for d in assert_error(bad_price, 422, "validation_error")["details"]
    ]
    control = api_a.put("/api/products/by-sku/KEEP-1", {"title": "a\x07b", "price": "1"})
    assert "control characters" in str(assert_error(control, 422, "validation_error")["details"])
    dup = api_a.post("/api/products/bulk", {"products": [
        {"sku": "D-1", "title": "a", "price": "1"}, {"sku": "D-1", "title": "b", "price": "1"}]})  # fmt: skip
    assert_error(dup, 422, "validation_error")
    from marketplaces.models import Product

    assert list(Product.objects.values_list("sku", "title")) == [("KEEP-1", "kept")]


# --- resources ----------------------------------------------------------------------------


def test_resources_queue_depth_pause_resume(api_a):
    _one_job(api_a, "ebay")
    rows = {r["key"]: r for r in api_a.get("/api/resources").json()}
    ebay_key = MarketplaceJob.objects.get().resource_key
    assert rows[ebay_key]["waiting"] == 1 and rows[ebay_key]["paused"] is False
    assert api_a.post(f"/api/resources/{ebay_key}/pause").json()["paused"] is True
    assert api_a.post(f"/api/resources/{ebay_key}/resume").json()["paused"] is False
    assert_error(api_a.post("/api/resources/nope/pause"), 404, "not_found")


def test_docs_and_schema_are_served(api_a):
    schema = api_a.get("/api/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/batches/{batch_id}", "/api/resources"} <= set(
        paths
    )
    assert api_a.get("/api/openapi.json").json() == schema.json()
    # Built once per process: a second request does not build it again (~150 ms of CPU).
    assert api.get_openapi_schema(path_prefix="/api/") is api.get_openapi_schema(
        path_prefix="/api/"
    )
    docs = api_a.get("/api/docs")
    assert docs.status_code == 200 and b"/static/ninja/swagger-ui-bundle.js" in docs.content
    assert b"cdn." not in docs.content  # served from here: works offline and under the CSP


# --- audit --------------------------------------------------------------------------------


def test_api_actions_are_audited_with_the_token_name(api_a):
    from audit.models import AuditEntry

    job_id = _one_job(api_a)
    api_a.delete(f"/api/jobs/{job_id}")
    api_a.post(f"/api/jobs/{job_id}/retry")
    entries = list(
        AuditEntry.objects.order_by("pk").values_list("actor", "door", "action", "targets")
    )
    assert [e[2] for e in entries] == ["batch.start", "job.cancel", "job.retry"]
    assert {e[1] for e in entries} == {"api:test writer"} and entries[1][3] == [
        ["job", str(job_id)]
    ]
    # A refused action records nothing.
    api_a.post(f"/api/jobs/{job_id}/retry")
    assert AuditEntry.objects.count() == 3


def test_token_commands_create_list_revoke(tenant_a, capsys):
    import json

    from django.core.management import CommandError, call_command

    from api.models import ApiToken

    call_command(
        "api_token", "--tenant", "test_alpha", "--create", "nightly", "--read-only", "--json"
    )
    created = json.loads(capsys.readouterr().out)
    assert created["token"].startswith("mpo_") and created["read_only"] is True
    assert ApiClient("alpha.localhost", created["token"]).get("/api/jobs").status_code == 200
    call_command("api_token", "--tenant", "test_alpha", "--revoke", str(created["id"]))
    assert ApiToken.objects.get(pk=created["id"]).revoked_at is not None
    with pytest.raises(CommandError, match="no token"):
        call_command("api_token", "--tenant", "test_alpha", "--revoke", "999999")
    with pytest.raises(CommandError, match="needs a name"):
        call_command("api_token", "--tenant", "test_alpha", "--create", "  ")
