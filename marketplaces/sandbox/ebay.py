"""eBay Sell Inventory API, as far as the adapter uses it.

The seller is whoever the bearer token stands for (``seller_key``). Errors use
eBay's body: ``{"errors": [{"errorId", "domain", "category", "message"}]}``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from marketplaces.sandbox.operations import Marketplace
from marketplaces.sandbox.state import SandboxState, seller_key
from marketplaces.sandbox.web import HttpError, JSONResponse, bearer, json_body

MARKETPLACE = "ebay"
API = "/sell/inventory/v1"
CONDITIONS = {
    "NEW",
    "LIKE_NEW",
    "NEW_OTHER",
    "NEW_WITH_DEFECTS",
    "USED_EXCELLENT",
    "USED_VERY_GOOD",
    "USED_GOOD",
    "USED_ACCEPTABLE",
}


def error_body(status: int, message: str, error_id: int | None = None) -> dict[str, Any]:
    category = "REQUEST" if status < 500 else "APPLICATION"
    default_id = {400: 25001, 401: 1001, 404: 25713, 429: 2001}.get(status, 25001)
    return {
        "errors": [
            {
                "errorId": error_id or default_id,
                "domain": "API_INVENTORY",
                "category": category,
                "message": message,
            }
        ]
    }


def fail(status: int, message: str, error_id: int | None = None) -> HttpError:
    return HttpError(status, error_body(status, message, error_id))


def shop_of(state: SandboxState, request: Request) -> str:
    token = bearer(request.headers)
    if not token:
        raise HttpError(
            401, error_body(401, "Invalid access token. Check the Authorization header.", 1001)
        )
    return seller_key(token)


def _price(body: dict[str, Any]) -> Decimal:
    try:
        return Decimal(str(body["pricingSummary"]["price"]["value"]))
    except (KeyError, TypeError, InvalidOperation):
        raise fail(
            400, "The pricingSummary.price.value field is missing or invalid.", 25007
        ) from None


async def put_inventory_item(state: SandboxState, request: Request, shop: str) -> Response:
    body, sku = await json_body(request), request.path_params["sku"]
    title = (body.get("product") or {}).get("title") or ""
    if not title or len(title) > 80:
        raise fail(
            400,
            f"Invalid value for product.title. The title must be 1 to 80 characters; got {len(title)}.",
            25709,
        )
    if body.get("condition") not in CONDITIONS:
        raise fail(400, f"Invalid value for condition: {body.get('condition')!r}.", 25021)
    quantity = ((body.get("availability") or {}).get("shipToLocationAvailability") or {}).get(
        "quantity"
    )
    if not isinstance(quantity, int) or quantity < 0:
        raise fail(
            400, "Invalid value for availability.shipToLocationAvailability.quantity.", 25604
        )
    seller = state.ebay_seller(shop)
    existed = sku in seller.inventory
    seller.inventory[sku] = {"sku": sku, "locale": "en_US", **body}
    operation = "replace_inventory_item" if existed else "create_inventory_item"
    state.ledger.record(MARKETPLACE, shop, operation, sku=sku)
    return JSONResponse(None, 204)


async def get_inventory_item(state: SandboxState, request: Request, shop: str) -> Response:
    sku = request.path_params["sku"]
    item = state.ebay_seller(shop).inventory.get(sku)
    if item is None:
        raise fail(404, f"The inventory item {sku!r} could not be found.", 25710)
    return JSONResponse(item)


async def get_offers(state: SandboxState, request: Request, shop: str) -> Response:
    sku = request.query_params.get("sku", "")
    if not sku:
        raise fail(400, "The sku query parameter is required.", 25707)
    marketplace_id = request.query_params.get("marketplace_id") or None  # blank: any
    offers = [
        o
        for o in state.ebay_seller(shop).offers.values()
        if o["sku"] == sku and marketplace_id in (None, o["marketplaceId"])
    ]
    if not offers:
        raise fail(404, "This Offer is not available.", 25713)
    return JSONResponse(
        {
            "href": request.url.path,
            "limit": 100,
            "offers": offers,
            "size": len(offers),
            "total": len(offers),
        },
    )


def _offer(state: SandboxState, shop: str, offer_id: str) -> dict[str, Any]:
    offer = state.ebay_seller(shop).offers.get(offer_id)
    if offer is None:
        raise fail(404, "This Offer is not available.", 25713)
    return offer


async def create_offer(state: SandboxState, request: Request, shop: str) -> Response:
    body = await json_body(request)
    seller = state.ebay_seller(shop)
    sku = body.get("sku")
    if sku not in seller.inventory:
        raise fail(400, f"The SKU {sku!r} is not available in the system.", 25702)
    if _price(body) <= 0:
        raise fail(400, "The price must be greater than 0.", 25007)
    for offer in seller.offers.values():
        if (offer["sku"], offer["marketplaceId"], offer["format"]) == (
            sku,
            body.get("marketplaceId"),
            body.get("format"),
        ):
            raise fail(
                400, "An offer entity already exists for this SKU, marketplace and format.", 25002
            )
    offer_id = str(state.next_id("ebay-offer", 5_000_000_001))
    seller.offers[offer_id] = {**body, "offerId": offer_id, "status": "UNPUBLISHED"}
    state.ledger.record(MARKETPLACE, shop, "create_offer", sku=sku, offer_id=offer_id)
    return JSONResponse({"offerId": offer_id}, 201)


async def get_offer(state: SandboxState, request: Request, shop: str) -> Response:
    return JSONResponse(_offer(state, shop, request.path_params["offer_id"]))


async def update_offer(state: SandboxState, request: Request, shop: str) -> Response:
    offer, body = _offer(state, shop, request.path_params["offer_id"]), await json_body(request)
    if _price(body) <= 0:
        raise fail(400, "The price must be greater than 0.", 25007)
    offer.update({k: v for k, v in body.items() if k not in ("offerId", "status", "listing")})
    state.ledger.record(
        MARKETPLACE, shop, "update_offer", sku=offer["sku"], offer_id=offer["offerId"]
    )
    return JSONResponse(None, 204)


async def publish_offer(state: SandboxState, request: Request, shop: str) -> Response:
    offer = _offer(state, shop, request.path_params["offer_id"])
    item = state.ebay_seller(shop).inventory.get(offer["sku"], {})
    if not (item.get("product") or {}).get("imageUrls"):
        raise fail(400, "A minimum of 1 picture is required to publish this listing.", 25003)
    if offer["status"] == "PUBLISHED":  # eBay revises the live listing
        state.ledger.record(
            MARKETPLACE, shop, "revise_listing", sku=offer["sku"], offer_id=offer["offerId"]
        )
        return JSONResponse({"listingId": offer["listing"]["listingId"], "warnings": []})
    listing_id = str(state.next_id("ebay-listing", 110_000_000_001))
    offer["status"] = "PUBLISHED"
    offer["listing"] = {"listingId": listing_id, "listingStatus": "ACTIVE", "soldQuantity": 0}
    state.ledger.record(
        MARKETPLACE,
        shop,
        "publish_offer",
        sku=offer["sku"],
        offer_id=offer["offerId"],
        listing_id=listing_id,
    )
    return JSONResponse({"listingId": listing_id, "warnings": []})


async def withdraw_offer(state: SandboxState, request: Request, shop: str) -> Response:
    offer = _offer(state, shop, request.path_params["offer_id"])
    if offer["status"] != "PUBLISHED":
        raise fail(400, "The offer is not published, so it cannot be withdrawn.", 25015)
    offer["status"] = "UNPUBLISHED"
    offer["listing"] = {**offer["listing"], "listingStatus": "ENDED"}
    listing_id = offer["listing"]["listingId"]
    state.ledger.record(
        MARKETPLACE,
        shop,
        "withdraw_offer",
        sku=offer["sku"],
        offer_id=offer["offerId"],
        listing_id=listing_id,
    )
    return JSONResponse({"listingId": listing_id, "warnings": []})


async def bulk_update_price_quantity(state: SandboxState, request: Request, shop: str) -> Response:
    seller = state.ebay_seller(shop)
    responses = []
    for req in (await json_body(request)).get("requests", []):
        sku = req.get("sku")
        if sku not in seller.inventory:
            responses.append(
                {"statusCode": 404, "sku": sku, **error_body(404, f"SKU {sku!r} not found.", 25702)}
            )
            continue
        quantity = (req.get("shipToLocationAvailability") or {}).get("quantity")
        if quantity is not None:
            seller.inventory[sku]["availability"] = {
                "shipToLocationAvailability": {"quantity": quantity}
            }
        priced = False
        for change in req.get("offers", []):
            offer = seller.offers.get(change.get("offerId", ""))
            if offer is None:
                continue
            if "price" in change:
                offer["pricingSummary"] = {"price": change["price"]}
                priced = True
            if "availableQuantity" in change:
                offer["availableQuantity"] = change["availableQuantity"]
        # A request without a price changes the stock alone (a stock plan's push).
        operation = "update_price_quantity" if priced else "update_quantity"
        state.ledger.record(MARKETPLACE, shop, operation, sku=sku, quantity=quantity)
        responses.append({"statusCode": 200, "sku": sku, "errors": [], "warnings": []})
    return JSONResponse({"responses": responses})


EBAY = Marketplace(MARKETPLACE, error_body)
ITEM, OFFER = f"{API}/inventory_item/{{sku}}", f"{API}/offer/{{offer_id}}"
ROUTES = [
    EBAY.route("PUT", ITEM, "create_or_replace_inventory_item", put_inventory_item, shop_of),
    EBAY.route("GET", ITEM, "get_inventory_item", get_inventory_item, shop_of),
    EBAY.route("GET", f"{API}/offer", "get_offers", get_offers, shop_of),
    EBAY.route("POST", f"{API}/offer", "create_offer", create_offer, shop_of),
    EBAY.route("GET", OFFER, "get_offer", get_offer, shop_of),
    EBAY.route("PUT", OFFER, "update_offer", update_offer, shop_of),
    EBAY.route("POST", f"{OFFER}/publish", "publish_offer", publish_offer, shop_of),
    EBAY.route("POST", f"{OFFER}/withdraw", "withdraw_offer", withdraw_offer, shop_of),
    EBAY.route(
        "POST",
        f"{API}/bulk_update_price_quantity",
        "bulk_update_price_quantity",
        bulk_update_price_quantity,
        shop_of,
    ),
]
