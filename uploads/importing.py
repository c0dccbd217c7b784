"""The product import, as a job on the engine: marketplace ``catalog``, action ``import``.

Steps (each idempotent; the engine commits between them and a retry resumes at the first
one not completed):

1. ``validate_rows``: read the CSV or JSON Lines file, check every row (errors with
   line numbers), write the valid rows normalised to ``valid.jsonl``, the rejected ones to
   ``rejected.csv`` and the counts to ``summary.json`` (files, not a huge JSON row). Its
   output (counts, the first errors, the report URLs) is on the job's result.
2. ``upsert_products``: create or update ``marketplaces.Product`` by SKU in chunks of
   1,000 rows, all in one transaction: a cancel between chunks rolls it back (nothing
   half-written); running it again writes the same values.
3. ``create_batch``: the batch of publish jobs for the chosen marketplaces, recorded on the
   upload in the same transaction (a second run finds it and creates nothing).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from marketplaces.models import Product
from orchestration.services import JobSpec, batch_create
from orchestration.steps import (
    PermanentStepError,
    ResourceLimit,
    StepContext,
    register_provider,
    registered_marketplaces,
)
from uploads import storage
from uploads.models import Upload

CATALOG = "catalog"
UPSERT_CHUNK = 1000
ERRORS_ON_JOB = 20  # the first rejected rows shown on the job; all are in rejected.csv
CANCEL_EVERY = 1000  # rows between two cancel checks in a long step

FIELDS = ("sku", "title", "description", "price", "currency", "quantity", "brand", "size",
          "condition", "category", "images")  # fmt: skip
REQUIRED = ("sku", "title", "price")
CONDITIONS = ("new", "like_new", "very_good", "good", "satisfactory")
_LIMITS = {"sku": 64, "title": 140, "description": 20_000, "brand": 80, "size": 40,
           "category": 120}  # fmt: skip
_CURRENCY = re.compile(r"[A-Z]{3}")
_URL = re.compile(r"https?://\S{1,1990}")


class RowInvalid(ValueError):
    pass


def report_urls(upload_id: str) -> dict[str, str]:
    return {
        "report_url": f"/api/uploads/{upload_id}/report",
        "rejected_csv_url": f"/api/uploads/{upload_id}/report.csv",
    }


# --- one row ------------------------------------------------------------------------


def _text(raw: Mapping[str, Any], name: str, errors: list[str], *, required: bool = False) -> str:
    value = raw.get(name)
    if value is None:
        value = ""
    if not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        else:
            errors.append(f"{name}: must be text")
            return ""
    value = value.strip()
    if required and not value:
        errors.append(f"{name}: required")
    elif len(value) > _LIMITS[name]:
        errors.append(f"{name}: at most {_LIMITS[name]} characters (has {len(value)})")
    elif name != "description" and any(ord(c) < 32 for c in value):
        errors.append(f"{name}: control characters")
    return value


def clean_row(raw: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """The row as the product table stores it, or None and the reasons (field: message)."""
    errors: list[str] = []
    row: dict[str, Any] = {name: _text(raw, name, errors, required=name in REQUIRED)
                           for name in ("sku", "title", "description", "brand", "size",
                                        "category")}  # fmt: skip
    price = raw.get("price")
    try:
        if isinstance(price, bool) or price is None or str(price).strip() == "":
            raise InvalidOperation
        amount = Decimal(str(price).strip())
        if not amount.is_finite() or amount <= 0:
            errors.append("price: must be more than 0")
        elif amount != amount.quantize(Decimal("0.01")) or amount >= Decimal("100000000"):
            errors.append("price: at most 8 digits before the point and 2 after")
        else:
            row["price"] = str(amount.quantize(Decimal("0.01")))
    except (InvalidOperation, ValueError):
        errors.append(f"price: not a number ({str(price)[:40]!r})")
    currency = str(raw.get("currency") or "EUR").strip().upper()
    if not _CURRENCY.fullmatch(currency):
        errors.append("currency: three letters (ISO 4217)")
    row["currency"] = currency
    quantity = raw.get("quantity")
    if quantity is None or (isinstance(quantity, str) and not quantity.strip()):
        row["quantity"] = 1
    else:
        try:
            if isinstance(quantity, (bool, float)):
                raise ValueError
            row["quantity"] = int(str(quantity).strip())
            if not 0 <= row["quantity"] <= 2_147_483_647:
                errors.append("quantity: 0 to 2147483647")
        except ValueError:
            errors.append(f"quantity: not a whole number ({str(quantity)[:40]!r})")
    condition = str(raw.get("condition") or "good").strip().lower()
    if condition not in CONDITIONS:
        errors.append(f"condition: one of {', '.join(CONDITIONS)}")
    row["condition"] = condition
    images = raw.get("images") or []
    if isinstance(images, str):  # CSV: URLs separated by | or spaces
        images = [u for u in re.split(r"[|\s]+", images) if u]
    if not isinstance(images, list) or not all(isinstance(u, str) for u in images):
        errors.append("images: a list of URLs")
        images = []
    if len(images) > 20:
        errors.append("images: at most 20")
    bad = [u for u in images if not _URL.fullmatch(u)]
    if bad:
        errors.append(f"images: not an http(s) URL: {bad[0][:60]!r}")
    row["images"] = images
    return (None, errors) if errors else (row, [])


# --- reading a file -----------------------------------------------------------------


def read_rows(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(line number, raw row or None, error) for each row of the file."""
    with open(path, "rb") as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
        if fmt == Upload.Format.JSONL:
            yield from _jsonl_rows(text)
        else:
            yield from _csv_rows(text)


def _jsonl_rows(text: io.TextIOWrapper) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    line = 0
    while True:
        try:
            raw = text.readline()
        except UnicodeDecodeError:
            raise PermanentStepError(f"line {line + 1} is not UTF-8 text") from None
        if not raw:
            return
        line += 1
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield line, None, f"not valid JSON ({exc.msg})"
            continue
        if not isinstance(value, dict):
            yield line, None, "not a JSON object"
            continue
        yield line, value, ""


def _csv_rows(text: io.TextIOWrapper) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    reader = csv.reader(text)
    try:
        header = next(reader, None)
        if header is None:
            raise PermanentStepError("the file is empty")
        columns = [c.strip().lower() for c in header]
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise PermanentStepError(
                f"the CSV header (line 1) lacks the column(s) {', '.join(missing)}; "
                f"known columns: {', '.join(FIELDS)}"
            )
        while True:
            start = reader.line_num + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield start, None, f"unreadable CSV ({exc})"
                continue
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(columns):
                yield start, None, f"{len(values)} fields, the header has {len(columns)}"
                continue
            yield start, {c: v for c, v in zip(columns, values, strict=True) if c in FIELDS}, ""
    except UnicodeDecodeError:
        raise PermanentStepError(f"line {reader.line_num + 1} is not UTF-8 text") from None


# --- the steps ----------------------------------------------------------------------


def _upload_id(ctx: StepContext) -> str:
    return str(ctx.params.get("upload_id") or "")


def _upload(ctx: StepContext) -> Upload:
    upload = Upload.objects.filter(pk=_upload_id(ctx)).first()
    if upload is None or upload.state != Upload.State.COMPLETED:
        state = upload.state if upload else "missing"
        raise PermanentStepError(
            f"upload {ctx.params.get('upload_id')} is {state}: nothing to import"
        )
    return upload


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ValidateRows:
    step_type = "validate_rows"
    timeout = 240.0

    def check(self, ctx: StepContext) -> Mapping[str, Any] | None:
        directory = storage.upload_dir(ctx.params["upload_id"], ctx.schema_name)
        summary = directory / storage.SUMMARY
        if summary.exists() and (directory / storage.VALID_ROWS).exists():
            return json.loads(summary.read_text())
        return None

    def perform(self, ctx: StepContext) -> Mapping[str, Any]:
        upload = _upload(ctx)
        directory = storage.upload_dir(upload.pk, ctx.schema_name)
        valid_tmp = directory / (storage.VALID_ROWS + ".tmp")
        rejected_tmp = directory / (storage.REJECTED + ".tmp")
        read = valid = rejected = 0
        first_errors: list[dict[str, Any]] = []
        seen: dict[str, int] = {}
        with open(valid_tmp, "w") as good, open(rejected_tmp, "w", newline="") as bad:
            report = csv.writer(bad)
            report.writerow(["line", "sku", "errors"])
            for line, raw, problem in read_rows(directory / storage.DATA, upload.format):
                read += 1
                if read % CANCEL_EVERY == 0:
                    ctx.raise_if_cancelled()
                row: dict[str, Any] | None
                row, errors = clean_row(raw) if raw is not None else (None, [problem])
                sku = str((raw or {}).get("sku") or "").strip()[:64]
                if row is not None and row["sku"] in seen:
                    errors = [f"sku: duplicate of line {seen[row['sku']]}"]
                    row = None
                if row is None:
                    rejected += 1
                    report.writerow([line, sku, "; ".join(errors)])
                    if len(first_errors) < ERRORS_ON_JOB:
                        first_errors.append({"line": line, "sku": sku, "errors": errors})
                    continue
                seen[row["sku"]] = line
                valid += 1
                good.write(json.dumps(row, separators=(",", ":")) + "\n")
        summary = {
            "upload_id": str(upload.pk),
            "file": upload.filename,
            "format": upload.format,
            "rows_read": read,
            "valid": valid,
            "rejected": rejected,
            "errors": first_errors,
            **report_urls(str(upload.pk)),
        }
        os.replace(valid_tmp, directory / storage.VALID_ROWS)
        os.replace(rejected_tmp, directory / storage.REJECTED)
        _write_atomically(directory / storage.SUMMARY, json.dumps(summary))
        return summary


def _valid_rows(ctx: StepContext) -> Iterator[dict[str, Any]]:
    path = storage.upload_dir(ctx.params["upload_id"], ctx.schema_name) / storage.VALID_ROWS
    if not path.exists():
        raise PermanentStepError("the validated rows are gone (the upload was deleted)")
    with open(path) as handle:
        for line in handle:
            yield json.loads(line)


def _chunks(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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


class UpsertProducts:
    step_type = "upsert_products"
    timeout = 240.0

    def check(self, ctx: StepContext) -> Mapping[str, Any] | None:
        return None  # writing the same values again is harmless (and counts 0 changes)

    def perform(self, ctx: StepContext) -> Mapping[str, Any]:
        _upload(ctx)
        created = updated = rows = 0
        with transaction.atomic():  # all or nothing: a cancel between chunks rolls back
            for chunk in _chunks(_valid_rows(ctx), UPSERT_CHUNK):
                ctx.raise_if_cancelled()
                made, changed = products_bulk_upsert(chunk)
                created, updated, rows = created + made, updated + changed, rows + len(chunk)
        return {"rows": rows, "created": created, "updated": updated,
                "unchanged": rows - created - updated}  # fmt: skip


class CreateBatch:
    step_type = "create_batch"
    timeout = 240.0

    def check(self, ctx: StepContext) -> Mapping[str, Any] | None:
        upload = Upload.objects.filter(pk=_upload_id(ctx)).first()
        if upload is not None and upload.publish_batch_id is not None:
            return {"batch_id": upload.publish_batch_id}
        return None

    def perform(self, ctx: StepContext) -> Mapping[str, Any]:
        upload = _upload(ctx)
        marketplaces = [str(m) for m in ctx.params.get("marketplaces") or []]
        if not marketplaces:
            return {"batch_id": None, "jobs": 0, "marketplaces": []}
        unknown = [m for m in marketplaces if m not in registered_marketplaces()]
        if unknown:
            raise PermanentStepError(f"unknown marketplace(s): {', '.join(unknown)}")
        product_ids: list[int] = []
        for chunk in _chunks(_valid_rows(ctx), UPSERT_CHUNK):
            ctx.raise_if_cancelled()
            by_sku = dict(
                Product.objects.filter(sku__in=[r["sku"] for r in chunk]).values_list("sku", "pk")
            )
            product_ids += [by_sku[r["sku"]] for r in chunk if r["sku"] in by_sku]
        if not product_ids:
            return {"batch_id": None, "jobs": 0, "marketplaces": marketplaces}
        specs = [JobSpec(marketplace=m, action="publish", product_id=pk)
                 for pk in product_ids for m in marketplaces]  # fmt: skip
        with transaction.atomic():
            batch = batch_create(
                name=f"Import {upload.filename}"[:200],
                jobs=specs,
                created_by=str(ctx.params.get("created_by") or "import")[:150],
            )
            Upload.objects.filter(pk=upload.pk).update(publish_batch=batch)
        return {"batch_id": batch.pk, "jobs": len(specs), "marketplaces": marketplaces}


class CatalogProvider:
    """Imports of product files (see the module docstring). One import at a time per
    tenant (they write the same product table); one job per upload at once."""

    marketplace = CATALOG
    resource = ResourceLimit(key="catalog", concurrency=1)
    _steps = {"import": [ValidateRows(), UpsertProducts(), CreateBatch()]}

    def actions(self) -> list[str]:
        return list(self._steps)

    def steps(self, action: str) -> list:
        return self._steps[action]

    def concurrency_key(self, *, product_id: int | None, sku: str, params: dict) -> str:
        return f"catalog:upload:{params.get('upload_id', '')}"


def register() -> None:
    register_provider(CatalogProvider(), replace=True)
