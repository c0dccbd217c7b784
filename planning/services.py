"""Planning writes: importing sales history and stores, starting a plan, and the push
step's child batch. The doors (API, admin, command, seed_demo) call these."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from django.db import transaction

from orchestration.models import MarketplaceJob
from orchestration.services import JobSpec, batch_create, job_create
from planning import selectors
from planning.models import PlanPush, Store, WeeklySales
from planning.params import PlanParameters

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
PLAN_MAX_RETRIES = 2
STORE_COLUMNS = ("code", "name", "cluster", "region", "size_sqm")
SALES_COLUMNS = ("week", "store", "sku", "category", "units")


class HistoryImportError(ValueError):
    """A CSV that cannot be imported; ``line`` is the 1-based line of the first bad row."""

    def __init__(self, message: str, *, line: int | None = None):
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


def _rows(source: TextIO | str, columns: tuple[str, ...]) -> Iterable[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(source) if isinstance(source, str) else source)
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise HistoryImportError(f"missing column(s): {', '.join(missing)}", line=1)
    yield from enumerate(reader, start=2)


def history_import(*, stores: TextIO | str, sales: TextIO | str) -> dict[str, int]:
    """Create or update stores (by code) and weekly sales (by store, SKU, week) from CSV.

    All or nothing: the first bad row raises ``HistoryImportError`` naming its line and
    nothing is written. Returns counts.
    """
    store_rows = []
    for line, row in _rows(stores, STORE_COLUMNS):
        try:
            size = int(row["size_sqm"] or 0)
        except ValueError:
            raise HistoryImportError(
                f"size_sqm {row['size_sqm']!r} is not a number", line=line
            ) from None
        if not row["code"] or not row["cluster"]:
            raise HistoryImportError("code and cluster are required", line=line)
        store_rows.append(Store(code=row["code"].strip(), name=row["name"].strip() or row["code"],
                                cluster=row["cluster"].strip(), region=row["region"].strip(),
                                size_sqm=size))  # fmt: skip
    with transaction.atomic():
        Store.objects.bulk_create(
            store_rows, update_conflicts=True, unique_fields=["code"],
            update_fields=["name", "cluster", "region", "size_sqm"],
        )  # fmt: skip
        store_ids = dict(Store.objects.values_list("code", "pk"))
        sales_rows = []
        for line, row in _rows(sales, SALES_COLUMNS):
            try:
                week = date.fromisoformat(row["week"])
                units = int(row["units"])
            except ValueError:
                raise HistoryImportError("week must be YYYY-MM-DD and units a whole number",
                                         line=line) from None  # fmt: skip
            if units < 0:
                raise HistoryImportError("units must not be negative", line=line)
            if row["store"] not in store_ids:
                raise HistoryImportError(f"unknown store {row['store']!r}", line=line)
            if not row["sku"] or not row["category"]:
                raise HistoryImportError("sku and category are required", line=line)
            sales_rows.append(WeeklySales(store_id=store_ids[row["store"]], sku=row["sku"],
                                          category=row["category"], units=units,
                                          week=date.fromordinal(week.toordinal() - week.weekday())))  # fmt: skip
        WeeklySales.objects.bulk_create(
            sales_rows, batch_size=5000, update_conflicts=True,
            unique_fields=["store", "sku", "week"], update_fields=["category", "units"],
        )  # fmt: skip
    return {"stores": len(store_rows), "sales": len(sales_rows)}


def load_demo_history(*, fixture: str) -> dict[str, int]:
    """The demo tenant's shipped CSVs (planning/fixtures/<fixture>_*.csv), unless this tenant
    already has sales history (then nothing is read: ``make run`` seeds at every start)."""
    if WeeklySales.objects.exists():
        return {"stores": 0, "sales": 0}
    with (
        (FIXTURES_DIR / f"{fixture}_stores.csv").open(newline="") as stores,
        (FIXTURES_DIR / f"{fixture}_sales.csv").open(newline="") as sales,
    ):
        return history_import(stores=stores, sales=sales)


def plan_start(
    *, params: PlanParameters, created_by: str = "", enqueue: bool = True
) -> MarketplaceJob:
    """Queue a plan job with validated parameters (see planning.params.plan_parameters);
    ``enqueue=False`` leaves it PENDING (to watch it before it starts)."""
    data = params.as_job_params()
    data["created_by"] = created_by[:150]
    return job_create(
        marketplace=selectors.MARKETPLACE,
        action=selectors.ACTION,
        params=data,
        max_retries=PLAN_MAX_RETRIES,
        enqueue=enqueue,
    )


def plan_push_output(*, plan_job_id: int) -> dict[str, Any] | None:
    """What an earlier push of this plan created, or None."""
    push = PlanPush.objects.filter(plan_job_id=plan_job_id).first()
    if push is None:
        return None
    return {"plan_id": plan_job_id, "batch_id": push.batch_id, "listings": push.listings,
            "skipped": push.skipped}  # fmt: skip


def plan_push(
    *,
    plan_job_id: int,
    quantities: Mapping[str, int],
    marketplaces: list[str],
    on_progress: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Create the plan's child batch: an ``update_quantity`` job per listing that exists
    (SKU x marketplace), once per plan job. A second call returns the first one's result."""
    with transaction.atomic():
        # The row lock serialises two pushes of one plan (a stale worker's and its retry's):
        # the second waits here, then finds the first one's row.
        push, created = PlanPush.objects.select_for_update().get_or_create(plan_job_id=plan_job_id)
        if not created:
            return plan_push_output(plan_job_id=plan_job_id) or {}
        listed = selectors.listed_products(quantities, marketplaces)
        listings: list[tuple[str, str, int]] = [(sku, m, quantities[sku]) for sku in sorted(quantities)
                    for m in marketplaces if (sku, m) in listed]  # fmt: skip
        push.skipped = [[sku, m] for sku in sorted(quantities) for m in marketplaces
                        if (sku, m) not in listed]  # fmt: skip
        push.listings = [list(entry) for entry in listings]
        if listings:
            specs = [
                JobSpec(marketplace=m, action=MarketplaceJob.Action.UPDATE_QUANTITY,
                        product_id=listed[(sku, m)], sku=sku,
                        params={"quantity": quantity, "plan_job_id": plan_job_id})
                for sku, m, quantity in listings
            ]  # fmt: skip
            push.batch = batch_create(
                name=f"plan {plan_job_id}: quantities to {', '.join(marketplaces)}",
                jobs=specs,
                created_by=f"plan:{plan_job_id}",
            )
        push.save()
    if on_progress is not None:
        on_progress()
    return plan_push_output(plan_job_id=plan_job_id) or {}
