"""Every tenant at a glance (``--all-tenants``) or one: jobs by state, active batches,
paused work, schedules' next run, bulk operations in progress."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Min

from operations.cli import OperatorCommand
from operations.models import Operation
from orchestration.engine import marks
from orchestration.models import Batch, MarketplaceJob, ResourcePolicy
from orchestration.states import BATCH_TERMINAL
from scheduler.models import Schedule


class Command(OperatorCommand):
    help = "Status of one tenant (--tenant) or a table of every tenant (--all-tenants); --json."

    one_line_per_tenant = True

    def handle_tenant(self, schema: str, **options: Any) -> tuple[Any, str]:
        by_status = dict(
            MarketplaceJob.objects.values_list("status").annotate(n=Count("id")).order_by()
        )
        schedules = Schedule.objects.filter(active=True).aggregate(
            n=Count("id"), next=Min("next_run_at")
        )
        payload = {
            "tenant": schema,
            "paused": marks.tenant_paused(schema),
            "paused_resources": list(
                ResourcePolicy.objects.filter(paused=True).values_list("key", flat=True)
            ),
            "jobs": {s.value: by_status.get(s.value, 0) for s in MarketplaceJob.Status},
            "active_batches": Batch.objects.exclude(status__in=BATCH_TERMINAL).count(),
            "schedules": schedules["n"],
            "next_schedule_at": schedules["next"],
            "operations_running": Operation.objects.filter(
                status__in=["pending", "running"]
            ).count(),
        }
        jobs = payload["jobs"]
        nxt = payload["next_schedule_at"]
        text = (
            f"{schema:<16}{jobs['queued'] + jobs['retrying']:>8}{jobs['running']:>9}"
            f"{jobs['failed']:>8}{payload['active_batches']:>9}{payload['schedules']:>11}"
            f"  {nxt.strftime('%Y-%m-%d %H:%M') if nxt else '—':<17}"
            f"{payload['operations_running']:>5}  "
            f"{'paused' if payload['paused'] else ', '.join(payload['paused_resources']) or 'ok'}"
        )
        return payload, text

    def handle(self, *args: Any, **options: Any) -> None:
        if not options.get("json"):
            self.stdout.write(
                f"{'tenant':<16}{'queued':>8}{'running':>9}{'failed':>8}{'batches':>9}"
                f"{'schedules':>11}  {'next schedule':<17}{'ops':>5}  paused"
            )
        super().handle(*args, **options)
