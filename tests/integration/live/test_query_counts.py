"""Admin and dashboard pages issue the same number of queries for 10 or 1,000 rows (no N+1)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestration.models import Batch, MarketplaceJob
from orchestration.services import JobSpec, batch_create, job_create, run_available_jobs
from tests.engine_providers import MARKETPLACE, set_faults
from tests.helpers import staff_client


@pytest.fixture
def client(tenant_a):
    return staff_client(tenant_a, "count-staff")


def _queries(client, url: str) -> list[str]:
    client.get(url)  # warm caches (content types, permissions) out of the comparison
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return [q["sql"] for q in captured.captured_queries]


def _add_jobs(count: int) -> Batch:
    return batch_create(
        name=f"{count} jobs", start=False,
        jobs=[JobSpec(marketplace=MARKETPLACE, action="three", sku=f"S-{i}") for i in range(count)],
    )  # fmt: skip


def _add_batches(count: int) -> None:
    Batch.objects.bulk_create(
        [Batch(name=f"b{i}", total_jobs=3, completed_jobs=i % 4) for i in range(count)]
    )


@pytest.mark.parametrize(
    "url",
    [
        "/admin/orchestration/marketplacejob/",
        "/admin/orchestration/marketplacejob/?status__exact=pending&marketplace=testmkt",
        "/admin/orchestration/marketplacejob/?q=S-1",
        "/admin/orchestration/batch/",
        "/dashboard/",
        "/dashboard/panels/failures/",
    ],
)
def test_list_pages_do_not_grow_with_rows(client, url, tmp_path):
    params = {"faults": str(tmp_path / "faults.json")}
    set_faults(params["faults"], {"only": {"mode": "permanent", "times": 2}})
    for _ in range(2):  # two failures for the dashboard's list
        job_create(marketplace=MARKETPLACE, action="one", params=params)
    run_available_jobs()
    _add_jobs(10)
    _add_batches(10)
    few = _queries(client, url)
    _add_jobs(990)
    _add_batches(990)
    many = _queries(client, url)
    assert len(few) == len(many), "\n".join(many)
    # A bound per page: the dashboard reads eight panels (two queries each at most).
    assert len(many) <= (24 if url == "/dashboard/" else 20), "\n".join(many)


def test_job_detail_does_not_grow_with_steps_and_runs(client, tmp_path):
    params = {"faults": str(tmp_path / "faults.json")}
    short = job_create(marketplace=MARKETPLACE, action="one", params=params)
    run_available_jobs()
    set_faults(params["faults"], {f"step{i}": {"mode": "retryable", "times": 1} for i in (3, 6, 9)})
    from django.test import override_settings

    with override_settings(ORCHESTRATION={"RETRY_BASE_SECONDS": 0.001, "RETRY_MAX_SECONDS": 0.01}):
        long = job_create(marketplace=MARKETPLACE, action="ten", params=params, max_retries=5)
        for _ in range(6):
            run_available_jobs()
            if MarketplaceJob.objects.get(pk=long.pk).status == "completed":
                break
            import time

            time.sleep(0.02)
    assert MarketplaceJob.objects.get(pk=long.pk).status == "completed"
    assert long.runs.count() == 4 and long.tasks.count() == 10
    one = _queries(client, f"/admin/orchestration/marketplacejob/{short.pk}/change/")
    ten = _queries(client, f"/admin/orchestration/marketplacejob/{long.pk}/change/")
    assert len(one) == len(ten), "\n".join(ten)
