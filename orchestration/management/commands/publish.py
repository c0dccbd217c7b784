from django.core.management.base import CommandError

from orchestration import services, steps
from orchestration.management.base import TenantCommand
from orchestration.models import Batch


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

    def handle(self, *args, **options):
        from marketplaces.models import Product

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
        self.emit(options, {"batch": batch.pk, "jobs": batch.total_jobs},
                  f"batch {batch.pk}: {batch.total_jobs} job(s) queued")  # fmt: skip
