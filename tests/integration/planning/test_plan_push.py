"""The push step against the sandbox (a real process over HTTP): a child batch of
``update_quantity`` jobs for the listings that exist, whose quantities land in the
marketplaces' ledger once, even when the push step (or a pushed job) runs again."""

from __future__ import annotations

import uuid
from collections import Counter
from decimal import Decimal

from marketplaces.models import MarketplaceAccount
from orchestration.models import Batch, MarketplaceJob, MarketplaceTask
from orchestration.services import job_create, job_retry_from_step
from planning.models import PlanPush
from planning.params import plan_parameters
from planning.services import plan_start
from tests.factories import ProductFactory
from tests.integration.planning.conftest import CATEGORY, run_plan, run_until_finished

LISTED = ("ACM-0003", "ACM-0004")  # two of the eight Jackets SKUs with history
# The sandbox operation each marketplace records for a quantity change.
QUANTITY_OPERATION = {"ebay": "update_quantity", "etsy": "update_listing_inventory"}


def publish(products, marketplaces) -> None:
    jobs = [job_create(marketplace=m, action="publish", product_id=p.pk)
            for p in products for m in marketplaces]  # fmt: skip
    run_until_finished([job.pk for job in jobs])
    for job in jobs:
        job.refresh_from_db()
        assert job.status == "completed", job.error_message


def quantity_entries(sandbox) -> Counter:
    """(marketplace, sku, quantity) of every quantity change the sandbox applied."""
    return Counter(
        (m, e["sku"], e["quantity"])
        for m, operation in QUANTITY_OPERATION.items()
        for e in sandbox.ledger(marketplace=m, operation=operation)
    )


def test_pushed_quantities_land_once_even_when_the_push_is_retried(history, sandbox, settings):
    settings.ORCHESTRATION = {"RETRY_BASE_SECONDS": 0.001, "RETRY_MAX_SECONDS": 0.01}
    for marketplace in QUANTITY_OPERATION:
        MarketplaceAccount.objects.create(
            marketplace=marketplace, shop_id=f"alpha-{marketplace}", base_url=sandbox.url,
            api_token=f"tok-{marketplace}-{uuid.uuid4().hex}",
        )  # fmt: skip
    products = [
        ProductFactory(sku=sku, title=f"Jacket {sku}", price=Decimal("80.00"), category=CATEGORY,
                       images=[f"https://img.example.test/alpha/{sku}.jpg"])
        for sku in LISTED
    ]  # fmt: skip
    publish(products, QUANTITY_OPERATION)
    params = plan_parameters(
        preset="fast-fashion",
        overrides={"category": CATEGORY, "marketplaces": ["ebay", "etsy", "vinted"]},
    )

    plan = run_plan(plan_start(params=params).pk)

    assert plan.status == "completed", plan.error_message
    quantities = {
        sku: row["quantity"]
        for sku, row in plan.tasks.get(step_type="compute_inventory").output["quantities"].items()
    }
    push = PlanPush.objects.get(plan_job_id=plan.pk)
    assert sorted(push.listings) == sorted(
        [sku, m, quantities[sku]] for sku in LISTED for m in QUANTITY_OPERATION
    )
    assert ["ACM-0003", "vinted"] in push.skipped  # no Vinted listing: nothing to update
    assert len(push.skipped) == 3 * 8 - 4
    children = MarketplaceJob.objects.filter(batch_id=push.batch_id)
    run_until_finished(children.values_list("pk", flat=True))
    assert set(children.values_list("status", flat=True)) == {"completed"}
    assert set(children.values_list("action", flat=True)) == {"update_quantity"}
    offered = {"ebay": lambda q: q, "etsy": lambda q: min(q, 999)}  # Etsy's most per listing
    expected = Counter(
        {(m, sku, offered[m](quantities[sku])): 1 for sku in LISTED for m in QUANTITY_OPERATION}
    )
    assert quantity_entries(sandbox) == expected

    # Staff retry the push step: it finds its batch (keyed by the plan job) and makes no other.
    job_retry_from_step(job_id=plan.pk, step_order=4)
    plan = run_plan(plan.pk)
    assert plan.status == "completed", plan.error_message
    task = plan.tasks.get(step_type="push_quantities")
    assert task.reused_existing and task.output["batch_id"] == push.batch_id
    assert Batch.objects.count() == 1 and PlanPush.objects.count() == 1

    # And a pushed job run again finds the quantity already there (its check) and sends nothing.
    child = children.first()
    job_retry_from_step(job_id=child.pk, step_order=1)
    run_until_finished([child.pk])
    child.refresh_from_db()
    assert child.status == "completed", child.error_message
    assert MarketplaceTask.objects.get(job_id=child.pk).reused_existing is True
    assert quantity_entries(sandbox) == expected
