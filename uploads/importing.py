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

Reading and checking rows is ``uploads.rows``; the product write is ``uploads.upsert``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from django.db import transaction

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
from uploads.rows import clean_row, read_rows
from uploads.upsert import products_bulk_upsert

CATALOG = "catalog"
UPSERT_CHUNK = 1000
ERRORS_ON_JOB = 20  # the first rejected rows shown on the job; all are in rejected.csv
CANCEL_EVERY = 1000  # rows between two cancel checks in a long step


def report_urls(upload_id: str) -> dict[str, str]:
    return {
        "report_url": f"/api/uploads/{upload_id}/report",
        "rejected_csv_url": f"/api/uploads/{upload_id}/report.csv",
    }


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
