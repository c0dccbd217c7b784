from typing import Any

from django.db.models import Count

from orchestration.engine.claims import resource_policies
from orchestration.management.base import TenantCommand
from orchestration.models import Batch, MarketplaceJob, ResourcePolicy


class Command(TenantCommand):
    help = "Queue depth, running and failed jobs per resource, and active batches of a tenant."

    def handle(self, *args, **options):
        resource_policies()
        by_status = {
            (row["resource_key"], row["status"]): row["n"]
            for row in MarketplaceJob.objects.values("resource_key", "status").annotate(
                n=Count("id")
            )
        }
        resources = []
        for policy in ResourcePolicy.objects.all():
            counts: dict[str, int] = {
                s.value: by_status.get((policy.key, s.value), 0) for s in MarketplaceJob.Status
            }
            resources.append(
                {"resource": policy.key, "concurrency": policy.concurrency, "paused": policy.paused,
                 "queued": counts["queued"] + counts["retrying"], "running": counts["running"],
                 "failed": counts["failed"], "completed": counts["completed"]}
            )  # fmt: skip
        batches: list[dict[str, Any]] = [
            {"id": b.pk, "name": b.name, "status": b.status, "progress": b.progress_percent,
             "done": b.done_jobs, "total": b.total_jobs}
            for b in Batch.objects.exclude(status__in=["completed", "cancelled"]).order_by("-created_at")[:20]
        ]  # fmt: skip
        payload = {"tenant": options["tenant"], "resources": resources, "active_batches": batches}
        lines = [f"{'resource':<16}{'queued':>8}{'running':>9}{'failed':>8}{'limit':>7}  paused"]
        for r in resources:
            lines.append(
                f"{r['resource']:<16}{r['queued']:>8}{r['running']:>9}{r['failed']:>8}"
                f"{r['concurrency']:>7}  {'yes' if r['paused'] else 'no'}"
            )
        for b in batches:
            bar = "#" * (b["progress"] // 5)
            lines.append(
                f"batch {b['id']:>5} {b['status']:<10} [{bar:<20}] {b['progress']:>3}%  {b['name']}"
            )
        self.emit(options, payload, "\n".join(lines))
