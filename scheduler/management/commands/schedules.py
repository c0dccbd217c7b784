"""List a tenant's schedules, create one, run one now, pause/resume one, or fire what is due."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from operations.cli import OperatorCommand, command_actor
from scheduler import services
from scheduler.models import Schedule


def _row(s: Schedule) -> dict[str, Any]:
    return {
        "id": s.pk, "name": s.name, "action": s.action, "marketplaces": s.marketplaces,
        "all_products": s.all_products, "skus": services.split_skus(s.skus), "when": s.when,
        "cron": s.cron, "every_minutes": s.every_minutes, "timezone": s.timezone,
        "active": s.active, "next_run_at": s.next_run_at, "last_run_at": s.last_run_at,
        "last_batch": s.last_batch_id, "last_outcome": s.last_outcome,
    }  # fmt: skip


class Command(OperatorCommand):
    help = (
        "Schedules of a tenant: list (default), --create NAME …, --run ID (now), --pause ID, "
        "--resume ID, --fire-due (what the workers' watchdog does every few seconds)."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        verbs = parser.add_mutually_exclusive_group()
        verbs.add_argument("--run", type=int, metavar="ID", help="Run this schedule now")
        verbs.add_argument("--pause", type=int, metavar="ID")
        verbs.add_argument("--resume", type=int, metavar="ID")
        verbs.add_argument("--create", metavar="NAME", help="Create a schedule with this name")
        verbs.add_argument("--fire-due", action="store_true", help="Fire due schedules now")
        parser.add_argument("--action", default="publish", choices=Schedule.Action.values)
        parser.add_argument("--marketplace", action="append", default=[], help="Repeatable")
        parser.add_argument("--all-products", action="store_true")
        parser.add_argument("--sku", action="append", default=[], help="Repeatable")
        parser.add_argument("--cron", default="", help="e.g. '0 6 * * 1-5'")
        parser.add_argument("--every", type=int, metavar="MINUTES")
        parser.add_argument("--timezone", default="UTC")
        parser.add_argument("--priority", type=int, default=0)
        parser.add_argument("--sequential", action="store_true")

    def handle_tenant(self, schema: str, **options: Any) -> tuple[Any, str]:
        actor = command_actor()
        if options["create"] is not None:
            schedule = services.schedule_save(
                actor=actor, name=options["create"], action=options["action"],
                marketplaces=options["marketplace"], all_products=options["all_products"],
                skus="\n".join(options["sku"]), priority=options["priority"],
                sequential=options["sequential"], cron=options["cron"],
                every_minutes=options["every"], timezone=options["timezone"], active=True,
            )  # fmt: skip
            return _row(
                schedule
            ), f"schedule {schedule.pk} created; next run {schedule.next_run_at}"
        if options["run"] is not None:
            firing = services.schedule_run_now(schedule_id=options["run"], actor=actor)
            payload = {"schedule": options["run"], "outcome": firing.outcome,
                       "batch": firing.batch_id, "message": firing.message}  # fmt: skip
            if firing.outcome == "failed":
                raise CommandError(f"schedule {options['run']}: {firing.message}")
            return payload, f"schedule {options['run']}: {firing.outcome}: {firing.message}"
        for verb, active in (("pause", False), ("resume", True)):
            if options[verb] is not None:
                schedule = services.schedule_set_active(
                    schedule_id=options[verb], active=active, actor=actor
                )
                return _row(schedule), f"schedule {schedule.pk}: {'active' if active else 'paused'}"
        if options["fire_due"]:
            fired = services.schedules_fire_due()
            fired_rows = [{"schedule": f.schedule_id, "slot": f.slot_at, "outcome": f.outcome,
                           "batch": f.batch_id, "message": f.message} for f in fired]  # fmt: skip
            return fired_rows, f"{len(fired)} slot(s) fired" + "".join(
                f"\n  schedule {f.schedule_id}: {f.outcome}: {f.message}" for f in fired
            )
        rows = [_row(s) for s in Schedule.objects.order_by("next_run_at", "pk")]
        lines = [f"{'id':>4}  {'name':<24}{'when':<34}{'next run (UTC)':<22}last"]
        for r in rows:
            nxt = r["next_run_at"].strftime("%Y-%m-%d %H:%M") if r["next_run_at"] else "paused"
            lines.append(f"{r['id']:>4}  {r['name'][:23]:<24}{r['when'][:33]:<34}{nxt:<22}"
                         f"{r['last_outcome'][:60]}")  # fmt: skip
        return rows, "\n".join(lines)
