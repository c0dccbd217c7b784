"""Product and marketplace-account writes."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import connection, transaction

from marketplaces.models import Marketplace, MarketplaceAccount, Product

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"


def load_demo_products(*, fixture: str) -> int:
    """Create the fixture's products that don't exist yet (by SKU); returns how many were created.

    Runs in the current tenant's schema; safe to run again.
    """
    rows = json.loads((FIXTURES_DIR / f"demo_products_{fixture}.json").read_text())
    existing = set(
        Product.objects.filter(sku__in=[r["sku"] for r in rows]).values_list("sku", flat=True)
    )
    new = [Product(**row) for row in rows if row["sku"] not in existing]
    with transaction.atomic():
        Product.objects.bulk_create(new)
    return len(new)


def ensure_demo_accounts() -> int:
    """Give the current tenant one active sandbox account per marketplace; returns how many were created.

    Idempotent: a marketplace that already has an active account is left alone.
    ``base_url`` stays blank so the accounts follow ``settings.SANDBOX_URL``. Shop ids
    are derived from the schema so two demo tenants never share sandbox state.
    """
    schema = connection.schema_name  # type: ignore[attr-defined]  # django-tenants adds it
    created = 0
    with transaction.atomic():
        for marketplace in Marketplace:
            _account, was_created = MarketplaceAccount.objects.get_or_create(
                marketplace=marketplace.value,
                is_active=True,
                defaults={
                    "shop_id": f"{schema}-{marketplace.value}",
                    # A random token per account: the sandbox accepts any, and a
                    # fixed demo token would end up in screenshots and logs.
                    "api_token": f"sbx_{marketplace.value}_{secrets.token_urlsafe(24)}",
                },
            )
            created += was_created
    return created


class ProductRowError(ValueError):
    """A product row that does not validate; ``errors`` maps field → messages."""

    def __init__(self, sku: str, errors: dict[str, list[str]]):
        super().__init__(f"product {sku!r} is invalid")
        self.sku = sku
        self.errors = errors


def products_upsert(rows: list[dict]) -> tuple[list[int], list[int]]:
    """Create or update products by SKU (all or nothing): (created ids, updated ids).

    Every row is validated with the model's own rules before anything is written.
    """
    created: list[int] = []
    updated: list[int] = []
    with transaction.atomic():
        existing = {
            p.sku: p
            for p in Product.objects.select_for_update().filter(sku__in=[r["sku"] for r in rows])
        }
        for row in rows:
            product = existing.get(row["sku"]) or Product(sku=row["sku"])
            for field, value in row.items():
                setattr(product, field, value)
            try:
                product.full_clean(validate_unique=False)
            except ValidationError as exc:
                raise ProductRowError(row["sku"], exc.message_dict) from None
            is_new = product.pk is None
            product.save()
            existing[product.sku] = product
            (created if is_new else updated).append(product.pk)
    return created, updated
