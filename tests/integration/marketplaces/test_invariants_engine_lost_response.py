"""A lost ``create_*`` response, through the engine (invariant 3; issue 10).

The sandbox (a real process, real HTTP) applies the create, writes its ledger, then
loses the answer. The engine records the run as failed (retryable), retries it after
its backoff, and the retry's ``check`` finds the effect: the job completes with the
effect in the marketplace's ledger exactly once.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest

from marketplaces.models import MarketplaceAccount
from orchestration.models import MarketplaceJob
from orchestration.services import job_create, run_available_jobs
from tests.factories import ProductFactory

SKU = "ENGINE-LOST-001"
# marketplace → (the step, the sandbox operation the fault hits, the ledger effect, all effects)
CASES = {
    "ebay": (
        "create_offer",
        "create_offer",
        "create_offer",
        {"create_inventory_item": 1, "create_offer": 1, "publish_offer": 1},
    ),
    "etsy": (
        "create_draft_listing",
        "create_draft_listing",
        "create_draft_listing",
        {"create_draft_listing": 1, "upload_listing_image": 1, "activate_listing": 1},
    ),
}


@pytest.mark.parametrize("marketplace", sorted(CASES))
def test_a_lost_create_response_completes_on_retry_with_one_effect(
    marketplace, tx_tenant_a, sandbox, settings
):
    settings.ORCHESTRATION = {"RETRY_BASE_SECONDS": 0.001, "RETRY_MAX_SECONDS": 0.01}
    step, operation, effect, effects = CASES[marketplace]
    # Committed (a transactional test): the steps read them on the engine's step thread.
    MarketplaceAccount.objects.create(
        marketplace=marketplace, shop_id=f"alpha-{marketplace}", base_url=sandbox.url,
        api_token=f"tok-{marketplace}-{uuid.uuid4().hex}",
    )  # fmt: skip
    product = ProductFactory(
        sku=SKU, title="Levi's 501 jeans", price=Decimal("25.00"), quantity=2,
        images=["https://img.example.test/alpha/001-1.jpg"],
    )  # fmt: skip
    sandbox.faults(
        {"kind": "lost_response", "marketplace": marketplace, "operation": operation, "times": 1}
    )
    job = job_create(marketplace=marketplace, action="publish", product_id=product.pk)

    # The first attempt fails; the retry is due at once (1-ms backoff) but a rate-limited
    # resource spaces its starts (Etsy: one a second), so keep draining until it ran.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run_available_jobs()
        job.refresh_from_db()
        if job.status not in ("queued", "retrying"):
            break
        time.sleep(0.1)

    assert job.status == "completed", job.error_message
    first, second = job.runs.order_by("attempt")
    assert (first.status, first.error_kind, first.failed_step) == ("failed", "retryable", step)
    assert (second.status, second.retry_of_id) == ("completed", first.pk)
    assert len(sandbox.ledger(marketplace=marketplace, operation=effect, sku=SKU)) == 1
    assert sandbox.operations(marketplace=marketplace) == effects
    assert job.tasks.get(step_type=step).reused_existing is True  # found, not repeated
    assert MarketplaceJob.objects.filter(status="running").count() == 0
