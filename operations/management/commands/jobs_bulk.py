"""Retry, cancel or run now every job matching a filter, as a tracked bulk operation
(a worker carries it out in chunks); ``--wait`` shows its progress until it ends."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from operations import services
from operations.cli import OperatorCommand, command_actor
from operations.models import Operation
from operations.progress import wait_with_bar


class Command(OperatorCommand):
    help = "Bulk retry/cancel/run_now over a job filter (an operation); --wait follows it."
    all_tenants_allowed = False

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("kind", choices=Operation.Kind.values)
        parser.add_argument("--status", action="append", help="Repeatable, e.g. failed")
        parser.add_argument("--marketplace")
        parser.add_argument("--action")
        parser.add_argument("--batch", type=int)
        parser.add_argument("--search", help="SKU prefix, or words of the SKU or error text")
        parser.add_argument("--wait", action="store_true", help="Follow it with a progress bar")
        parser.add_argument(
            "--here", action="store_true", help="Carry it out in this process (no workers needed)"
        )
        parser.add_argument("--stop", type=int, metavar="ID", help="Stop this operation instead")

    def handle_tenant(self, schema: str, **options: Any) -> tuple[Any, str]:
        actor = command_actor()
        if options["stop"] is not None:
            op = services.operation_cancel(operation_id=options["stop"], actor=actor)
            return {"operation": op.pk, "stopping": True}, f"operation {op.pk}: stopping"
        job_filter = {
            k: v
            for k, v in {
                "status": options["status"],
                "marketplace": options["marketplace"],
                "action": options["action"],
                "batch": options["batch"],
                "q": options["search"],
            }.items()
            if v not in (None, [], "")
        }
        operation = services.operation_create(
            kind=options["kind"], job_filter=job_filter, actor=actor
        )
        if options["here"]:
            while services.operation_run(operation_id=operation.pk):
                pass
        if options["wait"] or options["here"]:
            operation = wait_with_bar(
                lambda: Operation.objects.get(pk=operation.pk),
                show=not options["json"],
                stream=self.stderr,
            )
        else:
            operation.refresh_from_db()
        payload = {
            "operation": operation.pk, "status": operation.status, "total": operation.total,
            "processed": operation.processed, "succeeded": operation.succeeded,
            "skipped": operation.skipped, "skipped_reasons": operation.skipped_reasons,
        }  # fmt: skip
        text = (f"operation {operation.pk}: {operation.status}, {operation.processed} of "
                f"{operation.total} handled, {operation.succeeded} done, {operation.skipped} skipped")  # fmt: skip
        text += "".join(f"\n  {n} skipped: {why}" for why, n in operation.skipped_reasons.items())
        return payload, text

    def after_output(self, payloads: dict[str, Any], **options: Any) -> None:
        (payload,) = payloads.values()
        if payload.get("status") in ("failed", "cancelled"):
            raise CommandError(
                f"operation {payload['operation']} {payload['status']}", returncode=3
            )
