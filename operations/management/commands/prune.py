"""Delete finished work older than each tenant's retention settings (``--dry-run``: count)."""

from __future__ import annotations

from typing import Any

from operations import retention
from operations.cli import OperatorCommand


class Command(OperatorCommand):
    help = "Prune finished jobs, runs, activity, webhook deliveries and uploads past retention."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--dry-run", action="store_true", help="Only count what would go")

    def handle_tenant(self, schema: str, **options: Any) -> tuple[Any, str]:
        what = retention.describe()
        counts, _more = retention.prune(dry_run=options["dry_run"])
        verb = "would delete" if options["dry_run"] else "deleted"
        lines = (
            [f"{verb}:"] + [f"  {counts[kind]:>9,}  {what.get(kind, kind)}" for kind in counts]
            if counts
            else ["retention keeps everything (no limits set)"]
        )
        return {"dry_run": options["dry_run"], "counts": counts}, "\n".join(lines)
