"""Run jobs now (ahead of their resource's queue): given ids, audited."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from audit.services import record
from operations.cli import OperatorCommand, command_actor
from orchestration import services
from orchestration.models import MarketplaceJob


class Command(OperatorCommand):
    help = "Run jobs now: each goes first in line on its resource (a failed one is retried)."
    all_tenants_allowed = False

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("job_ids", nargs="+", type=int)

    def handle_tenant(self, schema: str, **options: Any) -> tuple[Any, str]:
        done, refused = [], []
        for job_id in options["job_ids"]:
            try:
                services.job_run_now(job_id=job_id)
                done.append(job_id)
            except services.JobError as exc:
                refused.append({"job": job_id, "reason": str(exc)})
            except MarketplaceJob.DoesNotExist:
                refused.append({"job": job_id, "reason": "no such job"})
        if done:
            actor = command_actor()
            record(actor.name, actor.door, "job.run_now", [("job", pk) for pk in done])
        if not done:
            raise CommandError("nothing was run now: " + "; ".join(
                f"{r['job']}: {r['reason']}" for r in refused))  # fmt: skip
        text = f"run now: {len(done)} job(s)" + "".join(
            f"\n  {r['job']}: {r['reason']}" for r in refused
        )
        return {"run_now": done, "refused": refused}, text
