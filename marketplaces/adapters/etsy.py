"""Etsy through Open API v3 (``x-api-key`` header).

publish   = create_draft_listing → upload_images → activate_listing
update    = update_inventory (price and quantity live in the listing's inventory)
update_quantity = update_quantity (the inventory again, with the listing's price kept)
unpublish = deactivate_listing
sync      = fetch_listing_state

A listing is found by SKU (``GET …/shops/{shop_id}/listings?sku=``) before a draft
is created; images are matched by rank, so an interrupted upload resumes where
it stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from marketplaces.adapters.base import (
    MarketplaceStep,
    Output,
    ReadOnlyStep,
    StaticProvider,
    target_price_quantity,
)
from marketplaces.adapters.http import MarketplaceHttp
from marketplaces.adapters.images import load_image
from marketplaces.models import MarketplaceAccount, Product
from orchestration.steps import PermanentStepError, ResourceLimit, StepContext

MARKETPLACE = "etsy"
API = "/v3/application"
# Etsy seller taxonomy ids for the demo's categories; 69150467 is "Clothing".
TAXONOMY = {"Jeans": 429, "Jackets": 448, "Sneakers": 1155, "Headphones": 1893}
DEFAULT_TAXONOMY = 69150467
MAX_QUANTITY = 999  # per listing


class EtsyApi:
    """The Open API v3 endpoints the steps use, for one shop and one step run."""

    def __init__(self, ctx: StepContext, account: MarketplaceAccount):
        self.shop = f"{API}/shops/{account.shop_id}"
        self.http = MarketplaceHttp(
            ctx,
            marketplace=MARKETPLACE,
            base_url=account.effective_base_url,
            auth_headers={"x-api-key": account.api_token},
        )

    def find_listing(self, sku: str) -> Mapping[str, Any] | None:
        r = self.http.call("find_listings", "GET", f"{self.shop}/listings", params={"sku": sku})
        matches = [x for x in r.json().get("results", []) if sku in (x.get("skus") or [])]
        return matches[0] if matches else None

    def create_draft(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        return self.http.call(
            "create_draft_listing", "POST", f"{self.shop}/listings", json=body
        ).json()

    def get_listing(self, listing_id: int) -> Mapping[str, Any] | None:
        r = self.http.call("get_listing", "GET", f"{API}/listings/{listing_id}", allow=(404,))
        return None if r.status_code == 404 else r.json()

    def images(self, listing_id: int) -> list[Mapping[str, Any]]:
        r = self.http.call("get_listing_images", "GET", f"{API}/listings/{listing_id}/images")
        return list(r.json().get("results", []))

    def upload_image(
        self, listing_id: int, *, rank: int, filename: str, content: bytes, content_type: str
    ) -> Mapping[str, Any]:
        return self.http.call(
            "upload_listing_image",
            "POST",
            f"{self.shop}/listings/{listing_id}/images",
            files={"image": (filename, content, content_type)},
            data={"rank": str(rank)},
        ).json()

    def set_state(self, listing_id: int, state: str) -> Mapping[str, Any]:
        return self.http.call(
            "update_listing", "PATCH", f"{self.shop}/listings/{listing_id}", json={"state": state}
        ).json()

    def update_inventory(self, listing_id: int, body: Mapping[str, Any]) -> None:
        self.http.call(
            "update_listing_inventory", "PUT", f"{API}/listings/{listing_id}/inventory", json=body
        )


def draft_body(product: Product) -> dict[str, Any]:
    return {
        "quantity": product.quantity,
        "title": product.title,
        "description": product.description or product.title,
        "price": float(product.price),
        "currency_code": product.currency,
        "who_made": "someone_else",
        "when_made": "2020_2025",
        "taxonomy_id": TAXONOMY.get(product.category, DEFAULT_TAXONOMY),
        "is_supply": False,
        "skus": [product.sku],
        "tags": [t for t in (product.brand, product.category) if t][:13],
    }


def amount(price: Mapping[str, Any]) -> Decimal:
    """Etsy money ``{"amount": 1999, "divisor": 100}`` as a Decimal."""
    return (Decimal(price["amount"]) / Decimal(price["divisor"])).quantize(Decimal("0.01"))


def listing_output(listing: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "listing_id": listing["listing_id"],
        "state": listing["state"],
        "url": listing.get("url"),
    }


class EtsyStep(MarketplaceStep):
    marketplace = MARKETPLACE

    def api(self, ctx: StepContext) -> tuple[EtsyApi, Product]:
        account, product = self.inputs(ctx)
        return EtsyApi(ctx, account), product

    def listing_or_fail(self, api: EtsyApi, product: Product) -> Mapping[str, Any]:
        listing = api.find_listing(product.sku)
        if listing is None:
            raise PermanentStepError(
                f"{product.sku} has no Etsy listing (publish it first)",
                detail={"step": self.step_type, "sku": product.sku},
            )
        return listing


class CreateDraftListing(EtsyStep):
    step_type = "create_draft_listing"

    def check(self, ctx: StepContext) -> Output | None:
        api, product = self.api(ctx)
        listing = api.find_listing(product.sku)
        return listing_output(listing) if listing else None

    def perform(self, ctx: StepContext) -> Output:
        api, product = self.api(ctx)
        return listing_output(api.create_draft(draft_body(product)))


class UploadImages(EtsyStep):
    """Uploads the product's images in order (rank 1 is the cover), skipping ranks already there."""

    step_type = "upload_images"
    timeout = 60.0

    def check(self, ctx: StepContext) -> Output | None:
        api, product = self.api(ctx)
        listing_id = ctx.output_of("create_draft_listing")["listing_id"]
        present = {img["rank"]: img for img in api.images(listing_id)}
        wanted = range(1, len(product.images) + 1)
        if all(rank in present for rank in wanted):
            return {
                "listing_id": listing_id,
                "image_ids": [present[r]["listing_image_id"] for r in wanted],
            }
        return None

    def perform(self, ctx: StepContext) -> Output:
        api, product = self.api(ctx)
        listing_id = ctx.output_of("create_draft_listing")["listing_id"]
        present = {img["rank"]: img for img in api.images(listing_id)}
        for rank, url in enumerate(product.images, start=1):
            ctx.raise_if_cancelled()  # uploads are the long part: stop promptly on cancel
            if rank in present:
                continue
            image = load_image(ctx, url, marketplace=MARKETPLACE)
            present[rank] = api.upload_image(
                listing_id,
                rank=rank,
                filename=image.filename,
                content=image.content,
                content_type=image.content_type,
            )
        ranks = range(1, len(product.images) + 1)
        return {
            "listing_id": listing_id,
            "image_ids": [present[r]["listing_image_id"] for r in ranks],
        }


class ActivateListing(EtsyStep):
    step_type = "activate_listing"

    def check(self, ctx: StepContext) -> Output | None:
        api, _product = self.api(ctx)
        listing = api.get_listing(ctx.output_of("create_draft_listing")["listing_id"])
        return listing_output(listing) if listing and listing["state"] == "active" else None

    def perform(self, ctx: StepContext) -> Output:
        api, _product = self.api(ctx)
        listing_id = ctx.output_of("create_draft_listing")["listing_id"]
        return listing_output(api.set_state(listing_id, "active"))


class UpdateInventory(EtsyStep):
    step_type = "update_inventory"

    def check(self, ctx: StepContext) -> Output | None:
        api, product = self.api(ctx)
        listing = self.listing_or_fail(api, product)
        price, quantity = target_price_quantity(ctx, product)
        if amount(listing["price"]) == price and listing["quantity"] == quantity:
            return {
                "listing_id": listing["listing_id"],
                "price": f"{price:.2f}",
                "quantity": quantity,
            }
        return None

    def perform(self, ctx: StepContext) -> Output:
        api, product = self.api(ctx)
        listing = self.listing_or_fail(api, product)
        price, quantity = target_price_quantity(ctx, product)
        offering = {"price": float(price), "quantity": quantity, "is_enabled": True}
        api.update_inventory(
            listing["listing_id"],
            {"products": [{"sku": product.sku, "property_values": [], "offerings": [offering]}]},
        )
        return {"listing_id": listing["listing_id"], "price": f"{price:.2f}", "quantity": quantity}


def listing_quantity(ctx: StepContext) -> int:
    """The quantity to offer: Etsy takes 1 to 999 per listing; more is offered as 999 (the
    rest stays in stock), 0 cannot be offered (deactivate the listing instead)."""
    wanted = int(ctx.params["quantity"])
    if wanted < 1:
        raise PermanentStepError(
            "an Etsy listing's quantity is 1 to 999: deactivate the listing to offer none",
            detail={"quantity": wanted},
        )
    return min(wanted, MAX_QUANTITY)


class UpdateQuantity(EtsyStep):
    """Sets the listing's quantity (a stock plan's push), keeping its current price."""

    step_type = "update_quantity"

    def check(self, ctx: StepContext) -> Output | None:
        api, product = self.api(ctx)
        listing = self.listing_or_fail(api, product)
        quantity = listing_quantity(ctx)
        if listing["quantity"] == quantity:
            return {"listing_id": listing["listing_id"], "quantity": quantity}
        return None

    def perform(self, ctx: StepContext) -> Output:
        api, product = self.api(ctx)
        listing = self.listing_or_fail(api, product)
        quantity = listing_quantity(ctx)
        offering = {"price": float(amount(listing["price"])), "quantity": quantity,
                    "is_enabled": True}  # fmt: skip
        api.update_inventory(
            listing["listing_id"],
            {"products": [{"sku": product.sku, "property_values": [], "offerings": [offering]}]},
        )
        return {"listing_id": listing["listing_id"], "quantity": quantity}


class DeactivateListing(EtsyStep):
    step_type = "deactivate_listing"

    def check(self, ctx: StepContext) -> Output | None:
        api, product = self.api(ctx)
        listing = api.find_listing(product.sku)
        if listing is None:
            return {"listing_id": None, "state": "not_listed", "url": None}
        return listing_output(listing) if listing["state"] != "active" else None

    def perform(self, ctx: StepContext) -> Output:
        api, product = self.api(ctx)
        listing = self.listing_or_fail(api, product)
        return listing_output(api.set_state(listing["listing_id"], "inactive"))


class FetchListingState(ReadOnlyStep, EtsyStep):
    step_type = "fetch_listing_state"
    timeout = 15.0

    def perform(self, ctx: StepContext) -> Output:
        api, product = self.api(ctx)
        listing = api.find_listing(product.sku)
        if listing is None:
            return {"listing_id": None, "state": "not_listed", "url": None}
        return listing_output(listing) | {
            "price": f"{amount(listing['price']):.2f}",
            "quantity": listing["quantity"],
        }


PROVIDER = StaticProvider(
    marketplace=MARKETPLACE,
    # Etsy's API key is rate limited (per second and per day): few in flight, a start rate.
    resource=ResourceLimit(key="etsy", concurrency=2, rate_per_minute=60),
    plan={
        "publish": (CreateDraftListing(), UploadImages(), ActivateListing()),
        "update": (UpdateInventory(),),
        "update_quantity": (UpdateQuantity(),),
        "unpublish": (DeactivateListing(),),
        "sync": (FetchListingState(),),
    },
)
