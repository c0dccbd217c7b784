"""Products: list (cursor), get, upsert by SKU (one, or up to 1,000 at once)."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest
from ninja import Path, Query, Router, Schema
from pydantic import Field

from api import schemas as s
from api.auth import audit, require_write
from api.errors import ApiError, not_found
from api.pagination import MAX_LIMIT, paginate
from marketplaces.models import Product
from marketplaces.services import ProductRowError, products_upsert

router = Router(tags=["products"])
ERRORS = {401: s.ErrorOut, 403: s.ErrorOut, 422: s.ErrorOut}


class ProductFilters(Schema):
    sku_prefix: str | None = Field(default=None, max_length=64)
    category: str | None = Field(default=None, max_length=120)
    cursor: str | None = Field(default=None, max_length=40)
    limit: int = Field(default=50, ge=1, le=MAX_LIMIT)


class SkuPath(Schema):
    sku: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f/]+$")


@router.get("", response={200: s.ProductPage, 401: s.ErrorOut, 422: s.ErrorOut})
def list_products(request: HttpRequest, filters: Query[ProductFilters]):
    products = Product.objects.all()
    if filters.sku_prefix:
        products = products.filter(sku__istartswith=filters.sku_prefix)
    if filters.category:
        products = products.filter(category=filters.category)
    items, next_cursor = paginate(products, cursor=filters.cursor, limit=filters.limit)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{int:product_id}", response={200: s.ProductOut, 401: s.ErrorOut, 404: s.ErrorOut})
def get_product(request: HttpRequest, product_id: int):
    product = Product.objects.filter(pk=product_id).first() if 1 <= product_id <= 2**62 else None
    if product is None:
        raise not_found("product", product_id)
    return product


def _upsert(request: HttpRequest, rows: list[dict]) -> dict:
    try:
        with transaction.atomic():
            created, updated = products_upsert(rows)
            audit(request, "products.upsert", [("product", pk) for pk in created + updated],
                  details={"created": len(created), "updated": len(updated)})  # fmt: skip
    except ProductRowError as exc:
        raise ApiError(422, "validation_error", str(exc), details={exc.sku: exc.errors}) from None
    return {"created": len(created), "updated": len(updated), "ids": created + updated}


@router.put("/by-sku/{sku}", response={200: s.UpsertOut, **ERRORS})
def upsert_product(request: HttpRequest, path: Path[SkuPath], body: s.ProductUpsertIn):
    """Create or update the product with this SKU."""
    require_write(request)
    return _upsert(request, [{"sku": path.sku, **body.dict()}])


@router.post("/bulk", response={200: s.UpsertOut, **ERRORS})
def upsert_products(request: HttpRequest, body: s.ProductsBulkIn):
    """Create or update up to 1,000 products by SKU, all or nothing."""
    require_write(request)
    rows = [p.dict() for p in body.products]
    skus = [r["sku"] for r in rows]
    if len(set(skus)) != len(skus):
        raise ApiError(422, "validation_error", "a SKU appears twice in the request")
    return _upsert(request, rows)
