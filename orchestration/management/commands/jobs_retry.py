from django.core.management.base import CommandError

from audit.services import record
from operations.cli import command_actor
from orchestration import services
from orchestration.management.base import TenantCommand
from orchestration.models import MarketplaceJob


class Command(TenantCommand):
    help = (
        "Retry failed jobs: given ids, or every failed job (--all-failed), optionally from a step."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("job_ids", nargs="*", type=int)
        parser.add_argument(
            "--all-failed", action="store_true", help="Every FAILED job of the tenant"
        )
        parser.add_argument("--from-step", type=int, help="Re-run from this step order on")

    def handle(self, *args, **options):
        ids = list(options["job_ids"])
        if options["all_failed"]:
            ids += list(MarketplaceJob.objects.filter(status="failed").values_list("pk", flat=True))
        if not ids:
            raise CommandError("give job ids or --all-failed")
        retried, refused = [], []
        for job_id in ids:
            try:
                if options["from_step"]:
                    services.job_retry_from_step(job_id=job_id, step_order=options["from_step"])
                else:
                    services.job_retry(job_id=job_id)
                retried.append(job_id)
            except (services.JobError, MarketplaceJob.DoesNotExist) as exc:
                refused.append({"job": job_id, "reason": str(exc) or "no such job"})
        if retried:
            actor = command_actor()
            action = "job.retry_from_step" if options["from_step"] else "job.retry"
            record(actor.name, actor.door, action, [("job", pk) for pk in retried],
                   details={"step_order": options["from_step"]} if options["from_step"] else None)  # fmt: skip
        self.emit(options, {"retried": retried, "refused": refused},
                  f"retried {len(retried)} job(s)" + "".join(f"\n  {r['job']}: {r['reason']}" for r in refused))  # fmt: skip
        if refused and not retried:
            raise CommandError("nothing was retried")
