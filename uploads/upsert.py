"""Writing imported products: one ``INSERT … ON CONFLICT (sku) DO UPDATE`` per chunk of
rows (the ``upsert_products`` step of ``uploads.importing``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.utils import timezone

from marketplaces.models import Product

_UPSERT = """
INSERT INTO {table} AS p (sku, title, description, price, currency, quantity, brand, size,
                          condition, category, images, created_at, updated_at)
SELECT sku, title, description, price, currency, quantity, brand, size, condition, category,
       images::jsonb, %(now)s, %(now)s
  FROM unnest(%(sku)s::text[], %(title)s::text[], %(description)s::text[],
              %(price)s::numeric[], %(currency)s::text[], %(quantity)s::int[],
              %(brand)s::text[], %(size)s::text[], %(condition)s::text[],
              %(category)s::text[], %(images)s::text[])
       AS r(sku, title, description, price, currency, quantity, brand, size, condition,
            category, images)
ON CONFLICT (sku) DO UPDATE SET
    title = EXCLUDED.title, description = EXCLUDED.description, price = EXCLUDED.price,
    currency = EXCLUDED.currency, quantity = EXCLUDED.quantity, brand = EXCLUDED.brand,
    size = EXCLUDED.size, condition = EXCLUDED.condition, category = EXCLUDED.category,
    images = EXCLUDED.images, updated_at = EXCLUDED.updated_at
WHERE (p.title, p.description, p.price, p.currency, p.quantity, p.brand, p.size, p.condition,
       p.category, p.images)
      IS DISTINCT FROM
      (EXCLUDED.title, EXCLUDED.description, EXCLUDED.price, EXCLUDED.currency,
       EXCLUDED.quantity, EXCLUDED.brand, EXCLUDED.size, EXCLUDED.condition,
       EXCLUDED.category, EXCLUDED.images)
RETURNING (xmax = 0)
"""
_COLUMNS = ("sku", "title", "description", "price", "currency", "quantity", "brand", "size",
            "condition", "category")  # fmt: skip


def products_bulk_upsert(rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """Insert or update products by SKU in one statement (one array per column): (created,
    updated). Rows that would not change anything are left alone (not counted)."""
    params: dict[str, Any] = {name: [row[name] for row in rows] for name in _COLUMNS}
    params["images"] = [json.dumps(row["images"]) for row in rows]
    params["now"] = timezone.now()
    sql = _UPSERT.format(table=connection.ops.quote_name(Product._meta.db_table))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = [flag for (flag,) in cursor.fetchall()]
    created = sum(1 for flag in inserted if flag)
    return created, len(inserted) - created
