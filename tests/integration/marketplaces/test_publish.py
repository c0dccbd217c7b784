"""Each adapter publishes, updates, syncs and unpublishes a product against the sandbox."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.integration.marketplaces.support import run_action, step_context, steps

PUBLISH_EFFECTS = {
    "ebay": {"create_inventory_item": 1, "create_offer": 1, "publish_offer": 1},
    "etsy": {"create_draft_listing": 1, "upload_listing_image": 1, "activate_listing": 1},
    "vinted": {"upload_photo": 1, "create_item": 1},
}


def test_ebay_publish_end_to_end(accounts, product, sandbox):
    outputs = run_action("ebay", "publish", product)

    assert list(outputs) == ["create_inventory_item", "create_offer", "publish_offer"]
    offer_id = outputs["create_offer"]["offer_id"]
    assert outputs["publish_offer"] == {
        "sku": "ALPHA-001",
        "offer_id": offer_id,
        "status": "PUBLISHED",
        "listing_id": outputs["publish_offer"]["listing_id"],
    }
    assert outputs["publish_offer"]["listing_id"]
    assert sandbox.operations(marketplace="ebay") == PUBLISH_EFFECTS["ebay"]


def test_etsy_publish_end_to_end(accounts, product, sandbox):
    outputs = run_action("etsy", "publish", product)

    listing_id = outputs["create_draft_listing"]["listing_id"]
    assert outputs["upload_images"]["listing_id"] == listing_id
    assert len(outputs["upload_images"]["image_ids"]) == 1
    assert outputs["activate_listing"]["state"] == "active"
    assert sandbox.operations(marketplace="etsy", shop="alpha-etsy") == PUBLISH_EFFECTS["etsy"]


def test_vinted_publish_end_to_end(accounts, product, sandbox):
    outputs = run_action("vinted", "publish", product)

    assert len(outputs["upload_photos"]["photo_ids"]) == 1
    assert outputs["create_item"]["status"] == "active"
    assert outputs["create_item"]["item_id"]
    assert (
        sandbox.operations(marketplace="vinted", shop="alpha-vinted") == PUBLISH_EFFECTS["vinted"]
    )


@pytest.mark.parametrize("marketplace", ["ebay", "etsy", "vinted"])
def test_publishing_again_finds_everything_and_changes_nothing(
    marketplace, accounts, product, sandbox
):
    first = run_action(marketplace, "publish", product)
    # A replay (a retry after the last step's commit was lost): every check finds its effect.
    for order, step in enumerate(steps(marketplace, "publish"), start=1):
        ctx = step_context(
            step,
            marketplace=marketplace,
            action="publish",
            product=product,
            outputs=first,
            order=order,
        )
        assert step.check(ctx) is not None, step.step_type

    assert sandbox.operations(marketplace=marketplace) == PUBLISH_EFFECTS[marketplace]


@pytest.mark.parametrize("marketplace", ["ebay", "etsy", "vinted"])
def test_multi_image_product_uploads_every_image_once(marketplace, accounts, product, sandbox):
    product.images = [f"https://img.example.test/alpha/001-{n}.jpg" for n in (1, 2, 3)]
    product.save()

    run_action(marketplace, "publish", product)

    if marketplace == "ebay":  # eBay takes the image URLs with the inventory item
        item = sandbox.http.get(
            f"/sell/inventory/v1/inventory_item/{product.sku}",
            headers={"Authorization": f"Bearer {accounts['ebay'].api_token}"},
        )
        assert item.status_code == 200, item.text
        assert item.json()["product"]["imageUrls"] == product.images
        assert sandbox.operations(marketplace="ebay")["create_inventory_item"] == 1
        return
    upload = {"etsy": "upload_listing_image", "vinted": "upload_photo"}[marketplace]
    ranks = sorted(e["rank"] for e in sandbox.ledger(marketplace=marketplace, operation=upload))
    assert ranks == [1, 2, 3]


FINAL_STATUS = {
    "ebay": ("status", "PUBLISHED", "UNPUBLISHED"),
    "etsy": ("state", "active", "inactive"),
    "vinted": ("status", "active", "deleted"),
}
SYNC_STEP = {
    "ebay": "fetch_offer_status",
    "etsy": "fetch_listing_state",
    "vinted": "fetch_item_status",
}


@pytest.mark.parametrize("marketplace", ["ebay", "etsy", "vinted"])
def test_update_sync_and_unpublish(marketplace, accounts, product, sandbox):
    key, live, gone = FINAL_STATUS[marketplace]
    run_action(marketplace, "publish", product)
    assert run_action(marketplace, "sync", product)[SYNC_STEP[marketplace]][key] == live

    updated = run_action(marketplace, "update", product, params={"price": "19.50", "quantity": 1})
    (output,) = updated.values()
    assert Decimal(output["price"]) == Decimal("19.50")
    # Already at that price: the update's check finds it and sends nothing.
    again = run_action(marketplace, "update", product, params={"price": "19.50", "quantity": 1})
    assert again == updated

    unpublished = run_action(marketplace, "unpublish", product)
    assert next(iter(unpublished.values()))[key] == gone
    unpublish_op = {"ebay": "withdraw_offer", "etsy": "deactivate_listing", "vinted": "delete_item"}
    # Nothing left to do: the check finds the listing gone, sends nothing, says so.
    again = run_action(marketplace, "unpublish", product)
    assert list(again) == list(unpublished) and next(iter(again.values()))[key] == gone
    assert sandbox.operations(marketplace=marketplace)[unpublish_op[marketplace]] == 1
    synced = run_action(marketplace, "sync", product)[SYNC_STEP[marketplace]]
    assert synced[key] != live

    effects = sandbox.operations(marketplace=marketplace)
    update_op = {
        "ebay": "update_price_quantity",
        "etsy": "update_listing_inventory",
        "vinted": "update_item",
    }
    assert effects[update_op[marketplace]] == 1
    assert effects[unpublish_op[marketplace]] == 1


def test_republishing_after_unpublish_goes_live_again(accounts, product, sandbox):
    run_action("ebay", "publish", product)
    run_action("ebay", "unpublish", product)
    outputs = run_action("ebay", "publish", product)
    assert outputs["publish_offer"]["status"] == "PUBLISHED"
    # The inventory item and the offer are reused; only the listing is new.
    assert sandbox.operations(marketplace="ebay") == {
        "create_inventory_item": 1,
        "create_offer": 1,
        "publish_offer": 2,
        "withdraw_offer": 1,
    }
