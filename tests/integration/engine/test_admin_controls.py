"""Staff controls in the admin call the engine's services (issue 4: limits editable live)."""

from orchestration.models import MarketplaceJob, ResourcePolicy
from orchestration.services import claim_next_job, job_create
from tests.engine_providers import BRIDGE
from tests.helpers import staff_client


def test_resource_limits_are_listed_and_editable_in_the_admin(engine, tenant_a):
    client = staff_client(tenant_a, "limits-staff")
    page = client.get("/admin/orchestration/resourcepolicy/")
    assert page.status_code == 200
    assert "testbridge" in page.text and "testmkt" in page.text
    bridge = ResourcePolicy.objects.get(key="testbridge")
    mkt = ResourcePolicy.objects.get(key="testmkt")
    form = {
        "form-TOTAL_FORMS": "2", "form-INITIAL_FORMS": "2", "_save": "Save",
        "form-0-id": str(bridge.pk), "form-0-concurrency": "2", "form-0-rate_per_minute": "",
        "form-1-id": str(mkt.pk), "form-1-concurrency": "8", "form-1-rate_per_minute": "",
    }  # fmt: skip
    response = client.post("/admin/orchestration/resourcepolicy/", form)
    assert response.status_code == 302, response.text[:2000]
    assert ResourcePolicy.objects.get(key="testbridge").concurrency == 2
    # Applies at the next claim: two bridge jobs may now run at once, without a restart.
    jobs = [job_create(marketplace=BRIDGE, action="one", params=engine.params()) for _ in range(2)]
    assert {claim_next_job().job_id, claim_next_job().job_id} == {j.pk for j in jobs}


def test_admin_retry_and_cancel_actions_call_the_services(engine, tenant_a):
    client = staff_client(tenant_a, "actions-staff")
    job = job_create(marketplace=BRIDGE, action="one", params=engine.params())
    response = client.post(
        "/admin/orchestration/marketplacejob/", {"action": "cancel", "_selected_action": [job.pk]}
    )
    assert response.status_code == 302
    assert MarketplaceJob.objects.get(pk=job.pk).status == "cancelled"
    client.post(
        "/admin/orchestration/marketplacejob/", {"action": "retry", "_selected_action": [job.pk]}
    )
    assert MarketplaceJob.objects.get(pk=job.pk).status == "queued"
    detail = client.get(f"/admin/orchestration/marketplacejob/{job.pk}/change/")
    assert detail.status_code == 200 and "only" in detail.text


def test_sku_prefix_search_is_answered_from_an_index(engine, tenant_a):
    from django.db import connection

    client = staff_client(tenant_a, "search-staff")
    wanted = job_create(marketplace=BRIDGE, action="one", sku="JKT-0042", params=engine.params())
    job_create(marketplace=BRIDGE, action="one", sku="SHOE-0042", params=engine.params())
    page = client.get("/admin/orchestration/marketplacejob/", {"q": "jkt-00"})
    assert f'data-live-job="{wanted.pk}"' in page.text and "SHOE-0042" not in page.text

    sql, params = MarketplaceJob.objects.filter(sku__istartswith="JKT-00").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # tiny table: ask what could be used
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "job_sku_prefix_idx" in plan, plan
