from django.core.management.base import CommandError

from audit.services import record
from operations.cli import command_actor
from orchestration import services
from orchestration.management.base import TenantCommand
from orchestration.models import Batch, MarketplaceJob


class Command(TenantCommand):
    help = "Cancel jobs (ids) or a whole batch (--batch): waiting ones at once, running ones at the next step."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("job_ids", nargs="*", type=int)
        parser.add_argument("--batch", type=int)

    def handle(self, *args, **options):
        if options["batch"]:
            if not Batch.objects.filter(pk=options["batch"]).exists():
                raise CommandError(f"no batch {options['batch']}")
            batch = services.batch_cancel(batch_id=options["batch"])
            _audit("batch.cancel", [("batch", batch.pk)])
            self.emit(
                options,
                {"batch": batch.pk, "status": batch.status},
                f"batch {batch.pk}: {batch.status}",
            )
            return
        if not options["job_ids"]:
            raise CommandError("give job ids or --batch")
        count = services.jobs_cancel(
            queryset=MarketplaceJob.objects.filter(pk__in=options["job_ids"])
        )
        if count:
            _audit("job.cancel", [("job", pk) for pk in options["job_ids"]], count=count)
        self.emit(
            options, {"cancelled_or_stopping": count}, f"cancelled or stopping {count} job(s)"
        )


def _audit(action: str, objects, **extra) -> None:
    actor = command_actor()
    record(actor.name, actor.door, action, objects, **extra)
