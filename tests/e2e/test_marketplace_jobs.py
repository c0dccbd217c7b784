"""The engine running the real eBay, Etsy and Vinted adapters against the sandbox process."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest

from marketplaces.models import MarketplaceAccount
from orchestration.services import JobSpec, batch_create, job_create, job_execute_now, job_retry
from orchestration.steps import get_provider
from tests.factories import ProductFactory
from tests.integration.marketplaces.support import Sandbox, SandboxProcess

MARKETPLACES = ("ebay", "etsy", "vinted")


@pytest.fixture(scope="module")
def sandbox_process(tmp_path_factory):
    process = SandboxProcess.start(tmp_path_factory.mktemp("sandbox") / "sandbox.log")
    yield process
    process.stop()


@pytest.fixture
def sandbox(sandbox_process):
    with httpx.Client(base_url=sandbox_process.url, timeout=5) as client:
        box = Sandbox(sandbox_process.url, client)
        box.reset()
        yield box


@pytest.fixture
def shop(tx_tenant_a, sandbox):
    """Committed accounts and a product (the step thread reads them on its own connection)."""
    for marketplace in MARKETPLACES:
        MarketplaceAccount.objects.create(
            marketplace=marketplace, shop_id=f"alpha-{marketplace}", base_url=sandbox.url,
            api_token=f"tok-{uuid.uuid4().hex}",
        )  # fmt: skip
    return ProductFactory(
        sku="E2E-001", price=Decimal("19.90"), images=["https://img.example.test/a.jpg"]
    )


@pytest.mark.parametrize("marketplace", MARKETPLACES)
def test_publish_jobs_on_every_marketplace_follow_the_same_pattern(shop, sandbox, marketplace):
    job = job_create(marketplace=marketplace, action="publish", product_id=shop.pk)
    assert job.sku == "E2E-001"
    assert job.resource_key == get_provider(marketplace).resource.key
    assert job_execute_now(job_id=job.pk) == "completed"
    job.refresh_from_db()
    tasks = list(job.tasks.order_by("step_order"))
    expected = [s.step_type for s in get_provider(marketplace).steps("publish")]
    assert [t.step_type for t in tasks] == expected
    assert {t.status for t in tasks} == {"completed"}
    assert all(t.started_at <= t.completed_at for t in tasks)
    assert job.started_at <= job.completed_at
    assert job.result and all(job.result[s] for s in expected)
    effects = sandbox.operations()
    assert effects and set(effects.values()) == {1}  # every side effect exactly once


def test_batch_across_marketplaces_completes(shop, sandbox):
    batch = batch_create(
        name="everywhere",
        jobs=[JobSpec(marketplace=m, action="publish", product_id=shop.pk) for m in MARKETPLACES],
    )
    for job in batch.jobs.order_by("pk"):
        job_execute_now(job_id=job.pk)
    batch.refresh_from_db()
    assert (batch.status, batch.progress_percent) == ("completed", 100)


def test_marketplace_validation_error_reaches_the_job(shop, sandbox):
    sandbox.faults(
        {
            "kind": "error",
            "marketplace": "ebay",
            "operation": "create_offer",
            "status": 400,
            "times": 1,
        }
    )
    job = job_create(marketplace="ebay", action="publish", product_id=shop.pk)
    job_execute_now(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and job.retry_count == 0
    assert "create_offer" in job.error_message
    job_retry(job_id=job.pk)
    assert job_execute_now(job_id=job.pk) == "completed"
    assert set(sandbox.operations().values()) == {1}
