"""Vinted through the seller's bridge extension (see ``bridge.py``).

publish   = upload_photos → create_item
update    = update_item (price; a Vinted item is always quantity 1)
update_quantity = update_quantity (the stock the extension keeps for the item: at 0 it
            hides the item, above it relists the next unit when one sells)
unpublish = delete_item
sync      = fetch_item_status

Photos are uploaded under a ``temp_uuid`` derived from shop and SKU (Vinted's own
grouping of a draft's photos), so a retry lists what is already there; the
extension keeps our SKU with each item, so ``find_item`` answers "already created".
"""

from __future__ import annotations

import base64
import uuid
from decimal import Decimal
from typing import Any

from marketplaces.adapters.base import (
    MarketplaceStep,
    Output,
    ReadOnlyStep,
    StaticProvider,
    target_price_quantity,
)
from marketplaces.adapters.bridge import BridgeSession
from marketplaces.adapters.images import load_image
from marketplaces.models import MarketplaceAccount, Product
from orchestration.steps import PermanentStepError, ResourceLimit, StepContext

MARKETPLACE = "vinted"
# Vinted's item status_id for each condition.
STATUS_IDS = {"new": 6, "like_new": 1, "very_good": 2, "good": 3, "satisfactory": 4}


def temp_uuid(account: MarketplaceAccount, product: Product) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"vinted:{account.shop_id}:{product.sku}"))


def item_output(item: dict[str, Any] | None) -> dict[str, Any]:
    if not item:
        return {"item_id": None, "status": "deleted", "url": None}
    return {"item_id": item["id"], "status": item["status"], "url": item.get("url")}


class VintedStep(MarketplaceStep):
    marketplace = MARKETPLACE
    timeout = 30.0

    def session(self, ctx: StepContext) -> tuple[BridgeSession, MarketplaceAccount, Product]:
        account, product = self.inputs(ctx)
        return BridgeSession(ctx, account), account, product


class UploadPhotos(VintedStep):
    step_type = "upload_photos"
    timeout = 60.0

    @staticmethod
    def _output(key: str, photos: dict[int, dict[str, Any]], count: int) -> dict[str, Any]:
        return {"temp_uuid": key, "photo_ids": [photos[r]["id"] for r in range(1, count + 1)]}

    def check(self, ctx: StepContext) -> Output | None:
        session, account, product = self.session(ctx)
        key = temp_uuid(account, product)
        with session as bridge:
            photos = {p["rank"]: p for p in bridge.command("list_photos", {"temp_uuid": key})}
        if all(rank in photos for rank in range(1, len(product.images) + 1)):
            return self._output(key, photos, len(product.images))
        return None

    def perform(self, ctx: StepContext) -> Output:
        session, account, product = self.session(ctx)
        key = temp_uuid(account, product)
        with session as bridge:
            photos = {p["rank"]: p for p in bridge.command("list_photos", {"temp_uuid": key})}
            for rank, url in enumerate(product.images, start=1):
                ctx.raise_if_cancelled()
                if rank in photos:
                    continue
                image = load_image(ctx, url, marketplace=MARKETPLACE)
                photos[rank] = bridge.command(
                    "upload_photo",
                    {
                        "temp_uuid": key,
                        "rank": rank,
                        "filename": image.filename,
                        "content_type": image.content_type,
                        "content_base64": base64.b64encode(image.content).decode(),
                    },
                )
        return self._output(key, photos, len(product.images))


class CreateItem(VintedStep):
    step_type = "create_item"

    def check(self, ctx: StepContext) -> Output | None:
        session, _account, product = self.session(ctx)
        with session as bridge:
            item = bridge.command("find_item", {"sku": product.sku})
        return item_output(item) if item else None

    def perform(self, ctx: StepContext) -> Output:
        session, _account, product = self.session(ctx)
        photos = ctx.output_of("upload_photos")
        params = {
            "sku": product.sku,
            "title": product.title,
            "description": product.description or product.title,
            "brand": product.brand,
            "size": product.size,
            "catalog": product.category,
            "status_id": STATUS_IDS.get(product.condition, 3),
            "price": {"amount": f"{product.price:.2f}", "currency_code": product.currency},
            "temp_uuid": photos["temp_uuid"],
            "photo_ids": photos["photo_ids"],
        }
        with session as bridge:
            return item_output(bridge.command("create_item", params))


class UpdateItem(VintedStep):
    step_type = "update_item"

    def _find(self, bridge: BridgeSession, product: Product) -> dict[str, Any]:
        item = bridge.command("find_item", {"sku": product.sku})
        if not item:
            raise PermanentStepError(
                f"{product.sku} has no Vinted item (publish it first)",
                detail={"step": self.step_type, "sku": product.sku},
            )
        return item

    def check(self, ctx: StepContext) -> Output | None:
        session, _account, product = self.session(ctx)
        price, _quantity = target_price_quantity(ctx, product)
        with session as bridge:
            item = self._find(bridge, product)
        if Decimal(item["price"]["amount"]) == price:
            return item_output(item) | {"price": f"{price:.2f}"}
        return None

    def perform(self, ctx: StepContext) -> Output:
        session, _account, product = self.session(ctx)
        price, _quantity = target_price_quantity(ctx, product)
        with session as bridge:
            item = self._find(bridge, product)
            updated = bridge.command(
                "update_item",
                {
                    "item_id": item["id"],
                    "price": {"amount": f"{price:.2f}", "currency_code": product.currency},
                },
            )
        return item_output(updated) | {"price": f"{price:.2f}"}


class UpdateQuantity(VintedStep):
    """Sets the stock the extension keeps for the item (a stock plan's push)."""

    step_type = "update_quantity"

    def check(self, ctx: StepContext) -> Output | None:
        session, _account, product = self.session(ctx)
        quantity = int(ctx.params["quantity"])
        with session as bridge:
            item = self._find(bridge, product)
        if item.get("quantity", 1) == quantity:
            return item_output(item) | {"quantity": quantity}
        return None

    def perform(self, ctx: StepContext) -> Output:
        session, _account, product = self.session(ctx)
        quantity = int(ctx.params["quantity"])
        with session as bridge:
            item = self._find(bridge, product)
            updated = bridge.command(
                "update_quantity", {"item_id": item["id"], "quantity": quantity}
            )
        return item_output(updated) | {"quantity": quantity}

    def _find(self, bridge: BridgeSession, product: Product) -> dict[str, Any]:
        item = bridge.command("find_item", {"sku": product.sku})
        if not item:
            raise PermanentStepError(
                f"{product.sku} has no Vinted item (publish it first)",
                detail={"step": self.step_type, "sku": product.sku},
            )
        return item


class DeleteItem(VintedStep):
    step_type = "delete_item"

    def check(self, ctx: StepContext) -> Output | None:
        session, _account, product = self.session(ctx)
        with session as bridge:
            item = bridge.command("find_item", {"sku": product.sku})
        return item_output(None) if not item else None

    def perform(self, ctx: StepContext) -> Output:
        session, _account, product = self.session(ctx)
        with session as bridge:
            item = bridge.command("find_item", {"sku": product.sku})
            if item:
                bridge.command("delete_item", {"item_id": item["id"]})
        return item_output(None) | {"deleted_item_id": item["id"] if item else None}


class FetchItemStatus(ReadOnlyStep, VintedStep):
    step_type = "fetch_item_status"
    timeout = 15.0

    def perform(self, ctx: StepContext) -> Output:
        session, _account, product = self.session(ctx)
        with session as bridge:
            item = bridge.command("find_item", {"sku": product.sku})
        return item_output(item) if item else {"item_id": None, "status": "not_listed", "url": None}


PROVIDER = StaticProvider(
    marketplace=MARKETPLACE,
    # The extension drives one browser tab: one session, so one job, per seller.
    resource=ResourceLimit(key="vinted-bridge", concurrency=1),
    plan={
        "publish": (UploadPhotos(), CreateItem()),
        "update": (UpdateItem(),),
        "update_quantity": (UpdateQuantity(),),
        "unpublish": (DeleteItem(),),
        "sync": (FetchItemStatus(),),
    },
)
