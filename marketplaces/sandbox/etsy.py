"""Etsy Open API v3, as far as the adapter uses it.

A shop belongs to the first API key that uses it (until reset); other keys get
403. Errors use Etsy's body: ``{"error": "..."}``.
"""

from __future__ import annotations

import email.parser
import email.policy
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from marketplaces.sandbox.operations import Marketplace
from marketplaces.sandbox.state import SandboxState, token_hash
from marketplaces.sandbox.web import HttpError, JSONResponse, json_or_form

MARKETPLACE = "etsy"
API = "/v3/application"
STATES = ("active", "inactive", "draft", "sold_out", "expired")


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": message}


def fail(status: int, message: str) -> HttpError:
    return HttpError(status, error_body(status, message))


def _authorize(state: SandboxState, request: Request, shop: str) -> str:
    key = request.headers.get("x-api-key", "")
    if not key:
        raise fail(401, "Missing x-api-key header")
    owner = state.etsy.shop_keys.setdefault(shop, token_hash(key))
    if owner != token_hash(key):
        raise fail(403, f"This API key cannot access shop {shop}")
    return shop


def shop_from_path(state: SandboxState, request: Request) -> str:
    return _authorize(state, request, request.path_params["shop_id"])


def shop_from_listing(state: SandboxState, request: Request) -> str:
    listing = _listing(state, request.path_params["listing_id"])
    return _authorize(state, request, listing["shop_id"])


def _listing(state: SandboxState, listing_id: str, shop: str | None = None) -> dict[str, Any]:
    listing = state.etsy.listings.get(int(listing_id)) if listing_id.isdigit() else None
    if listing is None or (shop is not None and listing["shop_id"] != shop):
        raise fail(404, f"Listing {listing_id} not found")
    return listing


def _money(value: Any, currency: str) -> dict[str, Any]:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise fail(400, f"price: {value!r} is not a number") from None
    if not Decimal("0.20") <= amount <= Decimal("50000"):
        raise fail(400, "price: must be between 0.20 and 50000.00")
    return {"amount": int(amount * 100), "divisor": 100, "currency_code": currency}


def _quantity(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():  # form-encoded bodies carry strings
        value = int(value)
    if not isinstance(value, int) or not 1 <= value <= 999:
        raise fail(400, "quantity: must be an integer between 1 and 999")
    return value


async def find_listings(state: SandboxState, request: Request, shop: str) -> Response:
    sku, wanted = request.query_params.get("sku"), request.query_params.get("state")
    results = [
        x
        for x in state.etsy.listings.values()
        if x["shop_id"] == shop
        and (not sku or sku in x["skus"])
        and (not wanted or x["state"] == wanted)
    ]
    query = request.query_params
    offset, limit = int(query.get("offset") or 0), int(query.get("limit") or 25)
    return JSONResponse({"count": len(results), "results": results[offset : offset + limit]})


async def create_draft_listing(state: SandboxState, request: Request, shop: str) -> Response:
    body = await json_or_form(request)
    title = str(body.get("title") or "")
    if not title or len(title) > 140:
        raise fail(400, "title: must be between 1 and 140 characters")
    for field in ("who_made", "when_made", "taxonomy_id"):
        if not body.get(field):
            raise fail(400, f"{field}: is required")
    listing_id = state.next_id("etsy-listing", 1_500_000_001)
    now = int(time.time())
    listing = {
        "listing_id": listing_id,
        "shop_id": shop,
        "title": title,
        "description": body.get("description", ""),
        "state": "draft",
        "quantity": _quantity(body.get("quantity")),
        "price": _money(body.get("price"), body.get("currency_code", "USD")),
        "skus": list(body.get("skus") or []),
        "tags": list(body.get("tags") or []),
        "taxonomy_id": body["taxonomy_id"],
        "who_made": body["who_made"],
        "when_made": body["when_made"],
        "url": f"https://www.etsy.com/listing/{listing_id}",
        "creation_timestamp": now,
        "updated_timestamp": now,
    }
    state.etsy.listings[listing_id] = listing
    state.ledger.record(
        MARKETPLACE,
        shop,
        "create_draft_listing",
        sku=",".join(listing["skus"]),
        listing_id=listing_id,
    )
    return JSONResponse(listing, 201)


async def get_listing(state: SandboxState, request: Request, shop: str) -> Response:
    return JSONResponse(_listing(state, request.path_params["listing_id"]))


async def get_listing_images(state: SandboxState, request: Request, shop: str) -> Response:
    images = state.etsy.images.get(int(request.path_params["listing_id"]), [])
    return JSONResponse({"count": len(images), "results": images})


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """multipart/form-data fields as ``{name: (filename, bytes)}`` (the stdlib's MIME parser does it)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise fail(400, "expected multipart/form-data")
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


async def upload_listing_image(state: SandboxState, request: Request, shop: str) -> Response:
    listing = _listing(state, request.path_params["listing_id"], shop)
    fields = parse_multipart(request.headers.get("content-type", ""), await request.body())
    filename, content = fields.get("image", (None, b""))
    if not content:
        raise fail(400, "image: a file is required")
    rank = int(fields.get("rank", (None, b"1"))[1] or 1)
    images = state.etsy.images.setdefault(listing["listing_id"], [])
    if len(images) >= 10:
        raise fail(400, "A listing can have at most 10 images")
    image_id = state.next_id("etsy-image", 4_100_000_001)
    image = {
        "listing_id": listing["listing_id"],
        "listing_image_id": image_id,
        "rank": rank,
        "url_fullxfull": f"https://i.etsystatic.com/{shop}/r/il/{image_id}/{filename or 'image'}",
        "full_width": None,
        "full_height": None,
    }
    images.append(image)
    state.ledger.record(
        MARKETPLACE,
        shop,
        "upload_listing_image",
        sku=",".join(listing["skus"]),
        listing_id=listing["listing_id"],
        image_id=image_id,
        rank=rank,
        bytes=len(content),
    )
    return JSONResponse(image, 201)


async def update_listing(state: SandboxState, request: Request, shop: str) -> Response:
    listing = _listing(state, request.path_params["listing_id"], shop)
    body = await json_or_form(request)
    new_state = body.get("state")
    if new_state is not None and new_state not in ("active", "inactive"):
        raise fail(400, f"state: cannot be set to {new_state!r}")
    if new_state == "active" and not state.etsy.images.get(listing["listing_id"]):
        raise fail(400, "Cannot activate a listing that has no images")
    if "title" in body:
        listing["title"] = str(body["title"])[:140]
    if "description" in body:
        listing["description"] = str(body["description"])
    operation = "update_listing"
    if new_state is not None and new_state != listing["state"]:
        operation = "activate_listing" if new_state == "active" else "deactivate_listing"
        listing["state"] = new_state
    listing["updated_timestamp"] = int(time.time())
    state.ledger.record(
        MARKETPLACE,
        shop,
        operation,
        sku=",".join(listing["skus"]),
        listing_id=listing["listing_id"],
    )
    return JSONResponse(listing)


async def update_listing_inventory(state: SandboxState, request: Request, shop: str) -> Response:
    listing = _listing(state, request.path_params["listing_id"], shop)
    body = await json_or_form(request)
    products = body.get("products") or []
    if not products or not products[0].get("offerings"):
        raise fail(400, "products: at least one product with one offering is required")
    offering = products[0]["offerings"][0]
    listing["price"] = _money(offering.get("price"), listing["price"]["currency_code"])
    listing["quantity"] = _quantity(offering.get("quantity"))
    listing["skus"] = [p.get("sku") for p in products if p.get("sku")] or listing["skus"]
    state.ledger.record(
        MARKETPLACE,
        shop,
        "update_listing_inventory",
        sku=",".join(listing["skus"]),
        listing_id=listing["listing_id"],
        quantity=listing["quantity"],
    )
    return JSONResponse(
        {
            "products": products,
            "price_on_property": [],
            "quantity_on_property": [],
            "sku_on_property": [],
        },
    )


ETSY = Marketplace(MARKETPLACE, error_body)
SHOP, LISTING = f"{API}/shops/{{shop_id}}/listings", f"{API}/listings/{{listing_id}}"
ROUTES = [
    ETSY.route("GET", SHOP, "find_listings", find_listings, shop_from_path),
    ETSY.route("POST", SHOP, "create_draft_listing", create_draft_listing, shop_from_path),
    ETSY.route("PATCH", f"{SHOP}/{{listing_id}}", "update_listing", update_listing, shop_from_path),
    ETSY.route(
        "POST",
        f"{SHOP}/{{listing_id}}/images",
        "upload_listing_image",
        upload_listing_image,
        shop_from_path,
    ),
    ETSY.route("GET", LISTING, "get_listing", get_listing, shop_from_listing),
    ETSY.route(
        "GET", f"{LISTING}/images", "get_listing_images", get_listing_images, shop_from_listing
    ),
    ETSY.route(
        "PUT",
        f"{LISTING}/inventory",
        "update_listing_inventory",
        update_listing_inventory,
        shop_from_listing,
    ),
]
