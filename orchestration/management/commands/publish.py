from django.core.management.base import CommandError

from audit.services import record
from marketplaces.models import Product
from operations.cli import command_actor
from operations.progress import wait_with_bar
from orchestration import services, steps
from orchestration.management.base import TenantCommand
from orchestration.models import Batch
from orchestration.states import BATCH_TERMINAL


class Command(TenantCommand):
    help = "Start a batch: one job per product (by SKU, or --all-products) on a marketplace."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--marketplace", required=True)
        parser.add_argument("--action", default="publish")
        parser.add_argument(
            "--sku", action="append", default=[], help="Repeat for several products"
        )
        parser.add_argument("--all-products", action="store_true")
        parser.add_argument(
            "--sequential", action="store_true", help="Stop the group at the first failure"
        )
        parser.add_argument("--priority", type=int, default=0)
        parser.add_argument("--name", default="")
        parser.add_argument(
            "--wait", action="store_true",
            help="Follow the batch with a progress bar until it ends; the exit code says how: "
            "0 completed, 2 partial or failed, 3 cancelled, 4 still running after --timeout",
        )  # fmt: skip
        parser.add_argument("--timeout", type=float, help="With --wait: give up after N seconds")

    def handle(self, *args, **options):
        try:
            steps.steps_for(options["marketplace"], options["action"])
        except steps.UnknownProvider as exc:
            raise CommandError(str(exc)) from exc
        products = (
            Product.objects.all()
            if options["all_products"]
            else Product.objects.filter(sku__in=options["sku"])
        )
        found = dict(products.values_list("sku", "pk"))
        missing = sorted(set(options["sku"]) - set(found))
        if missing:
            raise CommandError(f"unknown SKU(s): {', '.join(missing)}")
        if not found:
            raise CommandError("no products: give --sku or --all-products")
        specs = [
            services.JobSpec(marketplace=options["marketplace"], action=options["action"], product_id=pk,
                             sku=sku, priority=options["priority"])
            for sku, pk in sorted(found.items())
        ]  # fmt: skip
        batch = services.batch_create(
            name=options["name"]
            or f"{options['action']} {len(specs)} product(s) on {options['marketplace']}",
            jobs=specs,
            mode=Batch.Mode.SEQUENTIAL if options["sequential"] else Batch.Mode.PARALLEL,
            created_by="cli",
        )
        actor = command_actor()
        record(actor.name, actor.door, "batch.start", [("batch", batch.pk)],
               count=batch.total_jobs)  # fmt: skip
        if not options["wait"]:
            self.emit(options, {"batch": batch.pk, "jobs": batch.total_jobs},
                      f"batch {batch.pk}: {batch.total_jobs} job(s) queued")  # fmt: skip
            return
        batch = wait_with_bar(
            lambda: Batch.objects.get(pk=batch.pk),
            finished=lambda b: b.status in BATCH_TERMINAL,
            show=not options["json"], stream=self.stderr, timeout=options["timeout"],
        )  # fmt: skip
        self.emit(options, {"batch": batch.pk, "jobs": batch.total_jobs, "status": batch.status,
                            "completed": batch.completed_jobs, "failed": batch.failed_jobs,
                            "cancelled": batch.cancelled_jobs, "skipped": batch.skipped_jobs},
                  f"batch {batch.pk}: {batch.status} ({batch.completed_jobs} completed, "
                  f"{batch.failed_jobs} failed, {batch.cancelled_jobs} cancelled, "
                  f"{batch.skipped_jobs} skipped of {batch.total_jobs})")  # fmt: skip
        codes = {"completed": 0, "partial": 2, "failed": 2, "cancelled": 3}
        code = codes.get(batch.status, 4)
        if code:
            raise CommandError(f"batch {batch.pk} ended {batch.status}" if code < 4 else
                               f"batch {batch.pk} still {batch.status} after {options['timeout']} s",
                               returncode=code)  # fmt: skip
