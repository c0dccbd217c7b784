"""``manage.py import_history --tenant acme --stores stores.csv --sales sales.csv``"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandError

from orchestration.management.base import TenantCommand
from planning.services import HistoryImportError, history_import


class Command(TenantCommand):
    help = (
        "Import a tenant's stores and weekly sales history from CSV (all or nothing; "
        "stores by code, sales by store, SKU and week are created or updated). "
        "Columns: stores code,name,cluster,region,size_sqm; sales week,store,sku,category,units."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--stores", required=True, help="CSV of stores")
        parser.add_argument("--sales", required=True, help="CSV of weekly sales")

    def handle(self, *args, **options):
        paths = {name: Path(options[name]) for name in ("stores", "sales")}
        for name, path in paths.items():
            if not path.is_file():
                raise CommandError(f"--{name}: no such file {path}")
        try:
            with (
                paths["stores"].open(newline="") as stores,
                paths["sales"].open(newline="") as sales,
            ):
                counts = history_import(stores=stores, sales=sales)
        except HistoryImportError as exc:
            raise CommandError(f"nothing imported: {exc}") from None
        except UnicodeDecodeError:
            raise CommandError("nothing imported: the files must be UTF-8 CSV") from None
        self.emit(
            options,
            counts,
            f"{counts['stores']} store(s), {counts['sales']} weekly sales row(s) imported",
        )
