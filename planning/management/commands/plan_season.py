"""``manage.py plan_season --tenant acme --preset standard --category Jackets [--wait]``"""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import CommandError
from pydantic import ValidationError

from orchestration.management.base import TenantCommand
from orchestration.models import MarketplaceJob, MarketplaceTask
from orchestration.services import job_execute_now
from planning import selectors, services
from planning.params import PRESETS, STRATEGIES, field_errors, plan_parameters

FINISHED = ("completed", "failed", "cancelled")


class Command(TenantCommand):
    help = (
        "Plan a season's stock for a category: a plan job on the engine (forecast, quantities, "
        "push to the listings). Parameters come from --preset, overridden by the other options."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--preset", choices=sorted(PRESETS))
        parser.add_argument("--category", help="Product category with sales history")
        parser.add_argument("--season-start", help="YYYY-MM-DD (default: next Monday)")
        parser.add_argument("--season-end", help="YYYY-MM-DD (default: start + horizon)")
        parser.add_argument("--horizon-weeks", type=int, help="1-52")
        parser.add_argument("--strategy", choices=STRATEGIES)
        parser.add_argument("--dc-holdback", type=float, help="0-1")
        parser.add_argument("--safety-multiplier", type=float)
        parser.add_argument("--pack-size", type=int)
        parser.add_argument("--marketplace", action="append", dest="marketplaces",
                            help="Listings to update (repeat): ebay, etsy, vinted")  # fmt: skip
        parser.add_argument(
            "--wait", action="store_true", help="Wait for the plan, with a progress bar"
        )
        parser.add_argument("--run-here", action="store_true",
                            help="Run the plan in this process (no workers needed)")  # fmt: skip
        parser.add_argument("--timeout", type=float, default=300.0, help="Seconds --wait waits")

    def handle(self, *args, **options):
        keys = ("category", "season_start", "season_end", "horizon_weeks", "strategy",
                "dc_holdback", "safety_multiplier", "pack_size", "marketplaces")  # fmt: skip
        overrides = {k: options[k] for k in keys if options.get(k) is not None}
        try:
            params = plan_parameters(preset=options["preset"], overrides=overrides)
        except ValidationError as exc:
            lines = [f"  {e['field'] or 'parameters'}: {e['message']}" for e in field_errors(exc)]
            raise CommandError(
                "invalid plan parameters (nothing queued):\n" + "\n".join(lines)
            ) from None
        job = services.plan_start(params=params, created_by="cli")
        if options["run_here"]:
            job_execute_now(job_id=job.pk)
        elif options["wait"]:
            self._wait(job.pk, options)
        job.refresh_from_db()
        detail = selectors.plan_detail(job)
        self.emit(options, detail, self._text(detail))
        if job.status == "failed":
            raise CommandError(f"plan {job.pk} failed: {job.error_message}")

    def _wait(self, job_id: int, options: dict[str, Any]) -> None:
        total = MarketplaceTask.objects.filter(job_id=job_id).count()
        deadline = time.monotonic() + options["timeout"]
        with _Bar(total, quiet=options["json"], stream=self.stderr) as bar:
            while True:
                status = MarketplaceJob.objects.values_list("status", flat=True).get(pk=job_id)
                tasks = list(MarketplaceTask.objects.filter(job_id=job_id)
                             .order_by("step_order").values_list("step_type", "status"))  # fmt: skip
                done = sum(1 for _, s in tasks if s == "completed")
                current = next((name for name, s in tasks if s != "completed"), "done")
                bar.update(done, f"{status}: {current}")
                if status in FINISHED:
                    return
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"plan {job_id} is still {status} after {options['timeout']:g} s "
                        "(are the workers running? `manage.py run_workers`, or use --run-here)"
                    )
                time.sleep(0.25)

    @staticmethod
    def _text(detail: dict[str, Any]) -> str:
        lines = [
            f"plan {detail['id']}: {detail['status']}"
            + (f" ({detail['error']})" if detail["error"] else "")
        ]
        for step in detail["steps"]:
            lines.append(f"  {step['order']}. {step['step']:<18} {step['status']}")
        inventory = next((s["output"] for s in detail["steps"]
                          if s["step"] == "compute_inventory" and s["output"]), None)  # fmt: skip
        if inventory:
            lines.append(f"  {'sku':<12} {'demand':>9} {'quantity':>9}   (x{inventory['multiplier']}, "
                         f"holdback {inventory['dc_holdback']:.0%}, packs of {inventory['pack_size']})")  # fmt: skip
            for sku, row in sorted(inventory["quantities"].items()):
                lines.append(f"  {sku:<12} {row['demand']:>9.1f} {row['quantity']:>9}")
        if detail["push_batch_id"]:
            lines.append(f"  quantities pushed by batch {detail['push_batch_id']}")
        return "\n".join(lines)


class _Bar:
    """A progress bar on stderr: rich's when it is installed, else a plain text one."""

    def __init__(self, total: int, *, quiet: bool, stream: Any):
        self.total, self.quiet, self.stream = total, quiet, stream
        self._rich: Any = None
        self._last = ""

    def __enter__(self) -> _Bar:
        if self.quiet:
            return self
        try:
            from rich.console import Console
            from rich.progress import Progress
        except ImportError:
            return self
        # The command's stderr (OutputWrapper adds line endings: rich gets the stream under it).
        self._rich = Progress(console=Console(file=getattr(self.stream, "_out", self.stream)))
        self._rich.start()
        self._task = self._rich.add_task("plan", total=self.total)
        return self

    def update(self, done: int, label: str) -> None:
        if self.quiet:
            return
        if self._rich is not None:
            self._rich.update(self._task, completed=done, description=label)
            return
        line = f"[{'#' * done}{'.' * (self.total - done)}] {done}/{self.total} {label}"
        if line != self._last:
            self.stream.write(line)
            self._last = line

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()
        elif not self.quiet and self._last:
            sys.stderr.flush()
