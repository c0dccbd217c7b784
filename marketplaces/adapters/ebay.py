"""eBay through the Sell Inventory API (REST, OAuth bearer token).

publish   = create_inventory_item → create_offer → publish_offer
update    = update_price_quantity (bulk_update_price_quantity)
update_quantity = update_quantity (bulk_update_price_quantity with the quantity alone)
unpublish = withdraw_offer
sync      = fetch_offer_status

An inventory item is keyed by our SKU (PUT is create-or-replace); an offer is
found by SKU before one is created, so nothing is ever created twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from marketplaces.adapters import errors
from marketplaces.adapters.base import (
    MarketplaceStep,
    Output,
    ReadOnlyStep,
    StaticProvider,
    is_subset,
    target_price_quantity,
)
from marketplaces.adapters.http import MarketplaceHttp
from marketplaces.models import MarketplaceAccount, Product
from orchestration.steps import PermanentStepError, ResourceLimit, StepContext

MARKETPLACE = "ebay"
API = "/sell/inventory/v1"
SITE_BY_CURRENCY = {"EUR": "EBAY_DE", "GBP": "EBAY_GB", "USD": "EBAY_US"}
CONDITIONS = {
    "new": "NEW",
    "like_new": "NEW_OTHER",
    "very_good": "USED_VERY_GOOD",
    "good": "USED_GOOD",
    "satisfactory": "USED_ACCEPTABLE",
}
# eBay leaf categories for the demo's product categories; 11450 is "Clothing, Shoes & Accessories".
CATEGORIES = {"Jeans": "11483", "Jackets": "57988", "Sneakers": "15709", "Headphones": "112529"}
DEFAULT_CATEGORY = "11450"


def site(product: Product) -> str:
    return SITE_BY_CURRENCY.get(product.currency, "EBAY_DE")


class EbayApi:
    """The Sell Inventory endpoints the steps use, for one account and one step run."""

    def __init__(self, ctx: StepContext, account: MarketplaceAccount, product: Product):
        self.http = MarketplaceHttp(
            ctx,
            marketplace=MARKETPLACE,
            base_url=account.effective_base_url,
            auth_headers={
                "authorization": f"Bearer {account.api_token}",
                "content-language": "en-US",
                "x-ebay-c-marketplace-id": site(product),
            },
        )

    def get_inventory_item(self, sku: str) -> Mapping[str, Any] | None:
        r = self.http.call(
            "get_inventory_item", "GET", f"{API}/inventory_item/{quote(sku, safe='')}", allow=(404,)
        )
        return None if r.status_code == 404 else r.json()

    def put_inventory_item(self, sku: str, body: Mapping[str, Any]) -> None:
        self.http.call(
            "create_or_replace_inventory_item",
            "PUT",
            f"{API}/inventory_item/{quote(sku, safe='')}",
            json=body,
        )

    def find_offer(self, sku: str, marketplace_id: str) -> Mapping[str, Any] | None:
        # getOffers answers 404 (errorId 25713) when the SKU has no offer yet.
        r = self.http.call(
            "get_offers",
            "GET",
            f"{API}/offer",
            params={"sku": sku, "marketplace_id": marketplace_id},
            allow=(404,),
        )
        if r.status_code == 404:
            return None
        offers = [o for o in r.json().get("offers", []) if o.get("format") == "FIXED_PRICE"]
        return offers[0] if offers else None

    def get_offer(self, offer_id: str) -> Mapping[str, Any] | None:
        r = self.http.call(
            "get_offer", "GET", f"{API}/offer/{quote(offer_id, safe='')}", allow=(404,)
        )
        return None if r.status_code == 404 else r.json()

    def create_offer(self, body: Mapping[str, Any]) -> str:
        return str(
            self.http.call("create_offer", "POST", f"{API}/offer", json=body).json()["offerId"]
        )

    def update_offer(self, offer_id: str, body: Mapping[str, Any]) -> None:
        self.http.call("update_offer", "PUT", f"{API}/offer/{quote(offer_id, safe='')}", json=body)

    def publish_offer(self, offer_id: str) -> str:
        r = self.http.call(
            "publish_offer", "POST", f"{API}/offer/{quote(offer_id, safe='')}/publish"
        )
        return str(r.json()["listingId"])

    def withdraw_offer(self, offer_id: str) -> None:
        self.http.call("withdraw_offer", "POST", f"{API}/offer/{quote(offer_id, safe='')}/withdraw")

    def bulk_update_price_quantity(self, request: Mapping[str, Any], step_type: str) -> None:
        r = self.http.call(
            "bulk_update_price_quantity",
            "POST",
            f"{API}/bulk_update_price_quantity",
            json={"requests": [request]},
        )
        # The call answers 200/207 as a whole; each SKU carries its own status.
        for item in r.json().get("responses", []):
            if item.get("statusCode", 200) >= 300:
                raise errors.error_for_status(
                    marketplace=MARKETPLACE,
                    step_type=step_type,
                    operation="bulk_update_price_quantity",
                    status=item["statusCode"],
                    body={"errors": item.get("errors", [])},
                )


def inventory_item_body(product: Product) -> dict[str, Any]:
    aspects = {k: [v] for k, v in (("Brand", product.brand), ("Size", product.size)) if v}
    return {
        "availability": {"shipToLocationAvailability": {"quantity": product.quantity}},
        "condition": CONDITIONS.get(product.condition, "USED_GOOD"),
        "product": {
            "title": product.title,
            "description": product.description or product.title,
            "aspects": aspects,
            "imageUrls": list(product.images),
        },
    }


def price(amount: Decimal, currency: str) -> dict[str, str]:
    return {"value": f"{amount:.2f}", "currency": currency}


def offer_body(product: Product) -> dict[str, Any]:
    return {
        "sku": product.sku,
        "marketplaceId": site(product),
        "format": "FIXED_PRICE",
        "availableQuantity": product.quantity,
        "categoryId": CATEGORIES.get(product.category, DEFAULT_CATEGORY),
        "listingDescription": product.description or product.title,
        "pricingSummary": {"price": price(product.price, product.currency)},
        "merchantLocationKey": "default",
    }


def offer_output(offer: Mapping[str, Any]) -> dict[str, Any]:
    listing = offer.get("listing") or {}
    return {
        "sku": offer.get("sku"),
        "offer_id": offer.get("offerId"),
        "status": offer.get("status"),
        "listing_id": listing.get("listingId"),
    }


def withdrawn(product: Product, offer: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        "sku": product.sku,
        "offer_id": offer["offerId"] if offer else None,
        "status": "UNPUBLISHED",
    }


class EbayStep(MarketplaceStep):
    marketplace = MARKETPLACE

    def api(self, ctx: StepContext) -> tuple[EbayApi, Product]:
        account, product = self.inputs(ctx)
        return EbayApi(ctx, account, product), product


class CreateInventoryItem(EbayStep):
    step_type = "create_inventory_item"

    def check(self, ctx: StepContext) -> Output | None:
        api, product = self.api(ctx)
        item = api.get_inventory_item(product.sku)
        if item is not None and is_subset(inventory_item_body(product), item):
            return {"sku": product.sku}
        return None

    def perform(self, ctx: StepContext) -> Output:
        api, product = self.api(ctx)
        api.put_inventory_item(product.sku, inventory_item_body(product))
        return {"sku": product.sku}


class CreateOffer(EbayStep):
    """Creates the SKU's offer, or brings an existing one up to date (eBay allows one per SKU)."""

    step_type = "create_offer"

    def check(self, ctx: StepContext) -> Output | None:
        api, product = self.api(ctx)
        offer = api.find_offer(product.sku, site(product))
        if offer is not None and is_subset(offer_body(product), offer):
            return {"sku": product.sku, "offer_id": offer["offerId"]}
        return None

    def perform(self, ctx: StepContext) -> Output:
        api, product = self.api(ctx)
        offer = api.find_offer(product.sku, site(product))
        if offer is None:
            offer_id = api.create_offer(offer_body(product))
        else:
            offer_id = offer["offerId"]
            api.update_offer(offer_id, offer_body(product))
        return {"sku": product.sku, "offer_id": offer_id}


class PublishOffer(EbayStep):
    step_type = "publish_offer"

    def check(self, ctx: StepContext) -> Output | None:
        api, _product = self.api(ctx)
        offer_id = ctx.output_of("create_offer")["offer_id"]
        offer = api.get_offer(offer_id)
        if offer is not None and offer.get("status") == "PUBLISHED":
            return offer_output(offer)
        return None

    def perform(self, ctx: StepContext) -> Output:
        api, product = self.api(ctx)
        offer_id = ctx.output_of("create_offer")["offer_id"]
        listing_id = api.publish_offer(offer_id)
        return {
            "sku": product.sku,
            "offer_id": offer_id,
            "status": "PUBLISHED",
            "listing_id": listing_id,
        }


class UpdatePriceQuantity(EbayStep):
    step_type = "update_price_quantity"

    def _state(
        self, ctx: StepContext
    ) -> tuple[EbayApi, Product, Mapping[str, Any], dict[str, Any]]:
        api, product = self.api(ctx)
        amount, quantity = target_price_quantity(ctx, product)
        offer = api.find_offer(product.sku, site(product))
        if offer is None:
            raise PermanentStepError(
                f"{product.sku} has no eBay offer to update (publish it first)",
                detail={"step": self.step_type, "sku": product.sku},
            )
        output = {
            "sku": product.sku,
            "offer_id": offer["offerId"],
            "price": f"{amount:.2f}",
            "quantity": quantity,
        }
        return api, product, offer, output

    def check(self, ctx: StepContext) -> Output | None:
        api, product, offer, output = self._state(ctx)
        item = api.get_inventory_item(product.sku) or {}
        held = item.get("availability", {}).get("shipToLocationAvailability", {}).get("quantity")
        offered = offer.get("pricingSummary", {}).get("price", {}).get("value")
        if held == output["quantity"] and offered == output["price"]:
            return output
        return None

    def perform(self, ctx: StepContext) -> Output:
        api, product, offer, output = self._state(ctx)
        request = {
            "sku": product.sku,
            "shipToLocationAvailability": {"quantity": output["quantity"]},
            "offers": [
                {
                    "offerId": offer["offerId"],
                    "availableQuantity": output["quantity"],
                    "price": price(Decimal(output["price"]), product.currency),
                }
            ],
        }
        api.bulk_update_price_quantity(request, self.step_type)
        return output


class UpdateQuantity(EbayStep):
    """Sets the SKU's available quantity (a stock plan's push); the price is left alone."""

    step_type = "update_quantity"

    def _state(
        self, ctx: StepContext
    ) -> tuple[EbayApi, Product, Mapping[str, Any], dict[str, Any]]:
        api, product = self.api(ctx)
        quantity = int(ctx.params["quantity"])
        offer = api.find_offer(product.sku, site(product))
        if offer is None:
            raise PermanentStepError(
                f"{product.sku} has no eBay offer to update (publish it first)",
                detail={"step": self.step_type, "sku": product.sku},
            )
        return api, product, offer, {"sku": product.sku, "offer_id": offer["offerId"],
                                     "quantity": quantity}  # fmt: skip

    def check(self, ctx: StepContext) -> Output | None:
        api, product, offer, output = self._state(ctx)
        item = api.get_inventory_item(product.sku) or {}
        held = item.get("availability", {}).get("shipToLocationAvailability", {}).get("quantity")
        if held == output["quantity"] and offer.get("availableQuantity") == output["quantity"]:
            return output
        return None

    def perform(self, ctx: StepContext) -> Output:
        api, product, offer, output = self._state(ctx)
        request = {
            "sku": product.sku,
            "shipToLocationAvailability": {"quantity": output["quantity"]},
            "offers": [{"offerId": offer["offerId"], "availableQuantity": output["quantity"]}],
        }
        api.bulk_update_price_quantity(request, self.step_type)
        return output


class WithdrawOffer(EbayStep):
    step_type = "withdraw_offer"

    def check(self, ctx: StepContext) -> Output | None:
        api, product = self.api(ctx)
        offer = api.find_offer(product.sku, site(product))
        if offer is None or offer.get("status") != "PUBLISHED":
            return withdrawn(product, offer)
        return None

    def perform(self, ctx: StepContext) -> Output:
        api, product = self.api(ctx)
        offer = api.find_offer(product.sku, site(product))
        if offer is not None:
            api.withdraw_offer(offer["offerId"])
        return withdrawn(product, offer)


class FetchOfferStatus(ReadOnlyStep, EbayStep):
    step_type = "fetch_offer_status"
    timeout = 15.0

    def perform(self, ctx: StepContext) -> Output:
        api, product = self.api(ctx)
        offer = api.find_offer(product.sku, site(product))
        if offer is None:
            return {
                "sku": product.sku,
                "offer_id": None,
                "status": "NOT_LISTED",
                "listing_id": None,
            }
        return offer_output(offer)


PROVIDER = StaticProvider(
    marketplace=MARKETPLACE,
    # eBay's call limits are daily; what hurts is too many calls in flight per seller.
    resource=ResourceLimit(key="ebay", concurrency=4),
    plan={
        "publish": (CreateInventoryItem(), CreateOffer(), PublishOffer()),
        "update": (UpdatePriceQuantity(),),
        "update_quantity": (UpdateQuantity(),),
        "unpublish": (WithdrawOffer(),),
        "sync": (FetchOfferStatus(),),
    },
)
