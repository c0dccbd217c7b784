"""Tenants are sealed inside a real worker process (invariant 9; issue 10).

A django-q2 cluster with one worker runs jobs of two tenants back to back, in one drain
and then in later drains (separate q2 tasks on the same process): each step runs in its
job's schema, sees only its tenant's rows and writes only there.
"""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from marketplaces.models import Product
from orchestration.models import MarketplaceJob
from orchestration.services import job_create
from tests import invariant_providers
from tests.e2e.conftest import wait_for
from tests.engine_providers import ledger_entries
from tests.invariant_providers import SEAL

PROVIDERS = "tests.engine_providers,tests.invariant_providers"


@pytest.fixture
def seal_provider():
    invariant_providers.register()  # the workers load it through PROVIDER_MODULES
    yield
    invariant_providers.unregister()


def test_one_worker_runs_two_tenants_jobs_back_to_back_each_in_its_own_schema(
    tx_tenant_a, tx_tenant_b, start_cluster, tmp_path, seal_provider
):
    record = tmp_path / "record.jsonl"

    def make_job(schema: str) -> int:
        with schema_context(schema):
            Product.objects.get_or_create(
                sku=f"{schema}-product", defaults={"title": schema, "price": "1.00"}
            )
            job = job_create(
                marketplace=SEAL, action="peek", params={"tenant": schema, "record": str(record)}
            )
            return job.pk

    def completed(schema: str, job_ids: list[int]) -> bool:
        with schema_context(schema):
            done = MarketplaceJob.objects.filter(pk__in=job_ids, status="completed").count()
            return done == len(job_ids)

    jobs = {"test_alpha": [make_job("test_alpha")], "test_beta": [make_job("test_beta")]}
    start_cluster(workers=1, PROVIDER_MODULES=PROVIDERS, DRAIN_SECONDS=5)
    for schema, ids in jobs.items():
        wait_for(lambda s=schema, i=ids: completed(s, i), timeout=60, what=f"{schema}'s job")
    # Later q2 tasks on the same worker: beta first this time, then alpha.
    for schema in ("test_beta", "test_alpha"):
        jobs[schema].append(make_job(schema))
        wait_for(lambda s=schema: completed(s, jobs[s]), timeout=60, what=f"{schema}'s next job")

    records = ledger_entries(record)
    assert len(records) == 4 and len({r["pid"] for r in records}) == 1  # one worker process
    for entry in records:
        assert entry["schema"] == entry["tenant"], entry
    for schema, job_ids in jobs.items():
        with schema_context(schema):
            for job in MarketplaceJob.objects.filter(pk__in=job_ids):
                for task in job.tasks.all():  # both steps, before and after a step boundary
                    assert task.output["schema"] == schema
                    assert all(sku.startswith((f"{schema}-", f"written-by-{schema}-"))
                               for sku in task.output["seen"]), task.output  # fmt: skip
            written = set(
                Product.objects.filter(sku__startswith="written-by-").values_list("sku", flat=True)
            )
            assert written == {f"written-by-{schema}-{pk}" for pk in job_ids}
