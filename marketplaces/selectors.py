"""Reads the adapters need, in the current tenant's schema."""

from __future__ import annotations

from marketplaces.models import Marketplace, MarketplaceAccount, Product
from orchestration.steps import PermanentStepError


def active_account(marketplace: str) -> MarketplaceAccount:
    """The tenant's active account on ``marketplace``; a permanent step error if there is none."""
    account = MarketplaceAccount.objects.filter(marketplace=marketplace, is_active=True).first()
    if account is None:
        label = Marketplace(marketplace).label if marketplace in Marketplace.values else marketplace
        raise PermanentStepError(
            f"this seller has no active {label} account (add one under Marketplace accounts)",
            detail={"marketplace": marketplace},
        )
    return account


def product_for_step(product_id: int | None) -> Product:
    """The job's product; a permanent step error if the job has none or it was deleted."""
    product = Product.objects.filter(pk=product_id).first() if product_id is not None else None
    if product is None:
        raise PermanentStepError(
            f"product {product_id} does not exist", detail={"product_id": product_id}
        )
    return product
