"""The marketplaces' ``update_quantity`` step against the sandbox: it checks first (a
quantity already right is recorded, not sent again) and names a listing that is missing."""

from __future__ import annotations

import pytest

from orchestration.steps import PermanentStepError
from tests.integration.marketplaces.support import run_action, step_context, step_named

OPERATION = {"ebay": "update_quantity", "etsy": "update_listing_inventory",
             "vinted": "update_quantity"}  # fmt: skip


@pytest.mark.parametrize("marketplace", sorted(OPERATION))
def test_update_quantity_lands_once_and_is_found_the_second_time(
    marketplace, accounts, product, sandbox
):
    run_action(marketplace, "publish", product)
    step = step_named(marketplace, "update_quantity", "update_quantity")
    ctx = step_context(step, marketplace=marketplace, action="update_quantity", product=product,
                       params={"quantity": 7})  # fmt: skip

    assert step.check(ctx) is None  # published with quantity 2 (1 on Vinted)
    assert step.perform(ctx)["quantity"] == 7
    assert step.check(ctx)["quantity"] == 7  # the retry's check finds it: nothing sent again
    entries = sandbox.ledger(marketplace=marketplace, operation=OPERATION[marketplace])
    assert [(e["sku"], e["quantity"]) for e in entries] == [(product.sku, 7)]


@pytest.mark.parametrize("marketplace", sorted(OPERATION))
def test_update_quantity_of_an_unlisted_product_fails_for_good(marketplace, accounts, product):
    step = step_named(marketplace, "update_quantity", "update_quantity")
    ctx = step_context(step, marketplace=marketplace, action="update_quantity", product=product,
                       params={"quantity": 3})  # fmt: skip
    with pytest.raises(PermanentStepError, match="publish it first"):
        step.check(ctx)
