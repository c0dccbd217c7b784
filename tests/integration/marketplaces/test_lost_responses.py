"""'Effect applied but response lost' on every side-effecting step.

The sandbox applies the effect, writes its ledger, then loses the answer. The step
raises a retryable error; on the retry, ``check`` finds the effect and returns its
output, so the ledger still shows the effect once.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from orchestration.steps import RetryableStepError, StepTimeout
from tests.integration.marketplaces.support import run_action, step_context, step_named

# (marketplace, action, step, sandbox operation the fault hits, ledger effect)
SIDE_EFFECTS = [
    (
        "ebay",
        "publish",
        "create_inventory_item",
        "create_or_replace_inventory_item",
        "create_inventory_item",
    ),
    ("ebay", "publish", "create_offer", "create_offer", "create_offer"),
    ("ebay", "publish", "publish_offer", "publish_offer", "publish_offer"),
    (
        "ebay",
        "update",
        "update_price_quantity",
        "bulk_update_price_quantity",
        "update_price_quantity",
    ),
    ("ebay", "unpublish", "withdraw_offer", "withdraw_offer", "withdraw_offer"),
    ("etsy", "publish", "create_draft_listing", "create_draft_listing", "create_draft_listing"),
    ("etsy", "publish", "upload_images", "upload_listing_image", "upload_listing_image"),
    ("etsy", "publish", "activate_listing", "update_listing", "activate_listing"),
    ("etsy", "update", "update_inventory", "update_listing_inventory", "update_listing_inventory"),
    ("etsy", "unpublish", "deactivate_listing", "update_listing", "deactivate_listing"),
    ("vinted", "publish", "upload_photos", "upload_photo", "upload_photo"),
    ("vinted", "publish", "create_item", "create_item", "create_item"),
    ("vinted", "update", "update_item", "update_item", "update_item"),
    ("vinted", "unpublish", "delete_item", "delete_item", "delete_item"),
]
UPDATE = {"price": "31.00", "quantity": 1}


@pytest.mark.parametrize(
    ("marketplace", "action", "step_type", "operation", "effect"),
    SIDE_EFFECTS,
    ids=[f"{m}-{s}" for m, _a, s, _o, _e in SIDE_EFFECTS],
)
def test_lost_response_is_found_by_check_on_retry(
    marketplace, action, step_type, operation, effect, accounts, product, sandbox
):
    params = UPDATE if action == "update" else {}
    if action != "publish":
        run_action(marketplace, "publish", product)
    outputs = run_action(marketplace, action, product, until=step_type, params=params)
    step = step_named(marketplace, action, step_type)
    before = sandbox.operations(marketplace=marketplace)[effect]

    sandbox.faults(
        {"kind": "lost_response", "marketplace": marketplace, "operation": operation, "times": 1}
    )
    ctx = step_context(
        step,
        marketplace=marketplace,
        action=action,
        product=product,
        outputs=outputs,
        params=params,
    )
    assert step.check(ctx) is None
    with pytest.raises(RetryableStepError) as lost:
        step.perform(ctx)
    assert lost.value.retryable
    assert sandbox.operations(marketplace=marketplace)[effect] == before + 1  # it did land

    retry = step_context(
        step,
        marketplace=marketplace,
        action=action,
        product=product,
        outputs=outputs,
        params=params,
    )
    found = step.check(retry)
    assert found is not None, "check() must find the effect that landed"
    outputs[step_type] = dict(found)
    run_action(marketplace, action, product, params=params, outputs=outputs)  # the rest completes

    assert sandbox.operations(marketplace=marketplace)[effect] == before + 1


@pytest.mark.parametrize("lost_as", ["drop", "error", "timeout"])
def test_every_way_of_losing_the_answer_is_retryable(lost_as, accounts, product, sandbox):
    run_action("ebay", "publish", product, until="create_offer")
    step = step_named("ebay", "publish", "create_offer")
    sandbox.faults(
        {
            "kind": "lost_response",
            "operation": "create_offer",
            "lost_as": lost_as,
            "seconds": 10,
            "times": 1,
        }
    )
    # 2 s: the request must reach the sandbox within it even on a loaded machine (the
    # sandbox applies it, then holds the answer for 10 s).
    ctx = step_context(step, marketplace="ebay", action="publish", product=product, timeout=2)

    with pytest.raises(RetryableStepError) as lost:
        step.perform(ctx)
    if lost_as == "timeout":
        assert isinstance(lost.value, StepTimeout)

    found = step.check(step_context(step, marketplace="ebay", action="publish", product=product))
    assert found is not None and found["offer_id"]
    assert sandbox.operations(marketplace="ebay")["create_offer"] == 1


@pytest.mark.parametrize(
    ("marketplace", "step_type", "operation"),
    [
        ("etsy", "upload_images", "upload_listing_image"),
        ("vinted", "upload_photos", "upload_photo"),
    ],
)
def test_interrupted_image_upload_resumes_without_duplicates(
    marketplace, step_type, operation, accounts, product, sandbox
):
    product.images = [f"https://img.example.test/alpha/001-{n}.jpg" for n in (1, 2, 3)]
    product.price = Decimal("40.00")
    product.save()
    outputs = run_action(marketplace, "publish", product, until=step_type)
    step = step_named(marketplace, "publish", step_type)
    # The second upload lands but its answer is lost.
    sandbox.faults({"kind": "lost_response", "operation": operation, "skip": 1, "times": 1})
    with pytest.raises(RetryableStepError):
        step.perform(
            step_context(
                step, marketplace=marketplace, action="publish", product=product, outputs=outputs
            )
        )

    retry = step_context(
        step, marketplace=marketplace, action="publish", product=product, outputs=outputs
    )
    assert step.check(retry) is None  # two of three are there
    assert len(sandbox.ledger(marketplace=marketplace, operation=operation)) == 2
    output = step.perform(retry)

    assert len(output["photo_ids" if marketplace == "vinted" else "image_ids"]) == 3
    ranks = sorted(e["rank"] for e in sandbox.ledger(marketplace=marketplace, operation=operation))
    assert ranks == [1, 2, 3]
