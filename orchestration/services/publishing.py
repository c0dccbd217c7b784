"""Start publishing work for products named by id or SKU: what the API and the command share.

``products_select`` turns a request's product references into (id, SKU) pairs or says what
is wrong; ``batch_start`` creates one batch with a job per product and marketplace.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models.functions import Lower

from marketplaces.models import Product
from orchestration import steps
from orchestration.models import Batch
from orchestration.services.batches import batch_create
from orchestration.services.jobs import JobSpec


class SelectionError(ValueError):
    """The request names products or marketplaces that do not exist (``details`` says which)."""

    def __init__(self, message: str, **details: object):
        super().__init__(message)
        self.message = message
        self.details = details


def products_select(
    *,
    product_ids: Sequence[int] = (),
    skus: Sequence[str] = (),
    all_products: bool = False,
    limit: int,
) -> list[tuple[int, str]]:
    """(id, SKU) of the products named (SKUs in any case), in id order.

    Raises ``SelectionError`` naming unknown ids/SKUs, when nothing is named, or when more
    than ``limit`` products would be selected.
    """
    if all_products:
        rows = list(Product.objects.order_by("pk").values_list("pk", "sku")[: limit + 1])
        if not rows:
            raise SelectionError("this tenant has no products yet")
    else:
        ids = list(dict.fromkeys(product_ids))
        wanted = list(dict.fromkeys(s.strip() for s in skus if s.strip()))
        if not ids and not wanted:
            raise SelectionError("name products by id or SKU, or ask for all products")
        found: dict[int, str] = {}
        if ids:
            found.update(Product.objects.filter(pk__in=ids).values_list("pk", "sku"))
            missing_ids = [i for i in ids if i not in found]
            if missing_ids:
                raise SelectionError("unknown product id(s)", unknown_ids=missing_ids[:50])
        if wanted:
            by_lower = dict(
                Product.objects.annotate(key=Lower("sku"))
                .filter(key__in=[w.lower() for w in wanted])
                .values_list("key", "pk")
            )
            missing = [w for w in wanted if w.lower() not in by_lower]
            if missing:
                raise SelectionError("unknown SKU(s)", unknown_skus=missing[:50])
            found.update(Product.objects.filter(pk__in=by_lower.values()).values_list("pk", "sku"))
        rows = sorted(found.items())
    if len(rows) > limit:
        raise SelectionError(f"at most {limit:,} products per request", limit=limit)
    return rows


def check_job_kind(marketplace: str, action: str) -> None:
    """Raise ``SelectionError`` if no provider runs ``action`` on ``marketplace``."""
    try:
        steps.steps_for(marketplace, action)
    except steps.UnknownProvider as exc:
        raise SelectionError(str(exc), marketplace=marketplace, action=action) from exc


def batch_start(
    *,
    marketplaces: Sequence[str],
    action: str,
    products: Sequence[tuple[int, str]],
    mode: str = Batch.Mode.PARALLEL,
    priority: int = 0,
    max_retries: int = 3,
    name: str = "",
    created_by: str = "",
) -> Batch:
    """One batch: a job per product and marketplace (products in order, then marketplaces)."""
    marketplaces = list(dict.fromkeys(marketplaces))
    for marketplace in marketplaces:
        check_job_kind(marketplace, action)
    specs = [
        JobSpec(marketplace, action, pk, sku, None, priority, max_retries)
        for pk, sku in products
        for marketplace in marketplaces
    ]
    name = name or f"{action} {len(products)} product(s) on {', '.join(marketplaces)}"
    return batch_create(name=name[:200], jobs=specs, mode=mode, created_by=created_by)
