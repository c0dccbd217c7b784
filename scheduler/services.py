"""Schedules: the only writers of ``Schedule`` and ``ScheduleFiring``.

Firing (``schedules_fire_due``): a due schedule's row is taken with ``FOR UPDATE SKIP
LOCKED``; in that same transaction its slot's batch is created, a ``ScheduleFiring`` row
(unique per schedule and slot) is written and ``next_run_at`` moves to the first slot after
now. Two processes racing never fire one slot twice (the second skips the locked row, and
finds it no longer due once the first commits); a crash before the commit rolls back the
batch with the move, so the slot fires on the next pass. Slots missed while nothing ran
fire once (next_run_at jumps past now). A schedule whose previous batch is not finished
skips its slot and says so.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone

from audit import services as audit
from audit.services import Actor
from marketplaces.models import Product
from orchestration import steps
from orchestration.models import Batch
from orchestration.services import JobSpec, batch_create
from orchestration.states import BATCH_TERMINAL
from planning import selectors as plans
from planning.params import field_errors, plan_parameters
from planning.services import PLAN_MAX_RETRIES
from scheduler import timing
from scheduler.models import Schedule, ScheduleFiring
from tenants.sweeps import tenants_having

logger = logging.getLogger(__name__)

MAX_PRODUCTS = 100_000  # products per fired batch
EDITABLE = ("name", "action", "marketplaces", "plan", "all_products", "skus", "priority",
            "sequential", "cron", "every_minutes", "timezone", "active")  # fmt: skip


class ScheduleError(ValueError):
    """Bad schedule input; ``field`` names the field when there is one."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


def split_skus(text: str) -> list[str]:
    return list(dict.fromkeys(text.replace(",", " ").split()))


def schedule_check(values: dict[str, Any]) -> None:
    """Raise ``ScheduleError`` for anything a schedule cannot run with."""
    if not str(values.get("name") or "").strip():
        raise ScheduleError("a schedule needs a name", "name")
    if values.get("action") not in Schedule.Action.values:
        raise ScheduleError(
            f"unknown action {values.get('action')!r}: one of {', '.join(Schedule.Action.values)}",
            "action",
        )
    marketplaces = values.get("marketplaces")
    if values["action"] == Schedule.Action.PLAN:
        plan_parameters_of(values)  # the plan's own validation, reported on the plan field
    elif not isinstance(marketplaces, list) or not marketplaces:
        raise ScheduleError("choose at least one marketplace", "marketplaces")
    else:
        for marketplace in marketplaces:
            try:
                steps.steps_for(str(marketplace), values["action"])
            except steps.UnknownProvider as exc:
                raise ScheduleError(str(exc), "marketplaces") from exc
        if not values.get("all_products") and not split_skus(values.get("skus") or ""):
            raise ScheduleError("tick 'all products' or give at least one SKU", "skus")
    try:
        timing.check(
            cron=values.get("cron") or "",
            every_minutes=values.get("every_minutes"),
            timezone=values.get("timezone") or "UTC",
        )
    except timing.TimingError as exc:
        field = "timezone" if "timezone" in str(exc) else "cron"
        raise ScheduleError(str(exc), field) from exc


def plan_parameters_of(values: dict[str, Any]) -> Any:
    """A plan schedule's parameters as a firing now would use them (the season starts the
    next Monday unless the plan fixes it); ``ScheduleError`` on the ``plan`` field."""
    from pydantic import ValidationError

    plan = values.get("plan")
    if not isinstance(plan, dict):
        raise ScheduleError('a plan is an object, e.g. {"preset": "standard", …}', "plan")
    overrides = {k: v for k, v in plan.items() if k != "preset"}
    overrides.setdefault("marketplaces", list(values.get("marketplaces") or []))
    preset = plan.get("preset")
    try:
        return plan_parameters(preset=preset if isinstance(preset, str) else None,
                               overrides=overrides)  # fmt: skip
    except (ValidationError, TypeError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            message = "; ".join(f"{e['field']}: {e['message']}" for e in field_errors(exc))
        else:
            message = str(exc)
        raise ScheduleError(f"invalid plan: {message}", "plan") from None


def _next_run(schedule: Schedule, after: datetime) -> datetime:
    return timing.next_after(
        cron=schedule.cron,
        every_minutes=schedule.every_minutes,
        timezone=schedule.timezone,
        after=after,
    )


def schedule_save(*, actor: Actor, schedule_id: int | None = None, **values: Any) -> Schedule:
    """Create (no ``schedule_id``) or change a schedule; recomputes its next run; audited."""
    unknown = set(values) - set(EDITABLE)
    if unknown:
        raise ScheduleError(f"unknown field(s): {', '.join(sorted(unknown))}")
    with transaction.atomic():
        if schedule_id is None:
            schedule = Schedule(created_by=actor.name)
            before: dict[str, Any] = {}
        else:
            found = Schedule.objects.select_for_update().filter(pk=schedule_id).first()
            if found is None:
                raise ScheduleError(f"schedule {schedule_id} does not exist")
            schedule = found
            before = {f: getattr(schedule, f) for f in EDITABLE}
        for field, value in values.items():
            setattr(schedule, field, value)
        schedule.cron = (schedule.cron or "").strip()
        schedule.every_minutes = schedule.every_minutes or None
        if schedule.plan is None:  # an empty field of the admin form
            schedule.plan = {}
        schedule_check({f: getattr(schedule, f) for f in EDITABLE})
        schedule.next_run_at = _next_run(schedule, timezone.now()) if schedule.active else None
        schedule.save()
        changed = {
            f: getattr(schedule, f)
            for f in EDITABLE
            if before.get(f) != getattr(schedule, f) or schedule_id is None
        }
        audit.record(
            actor.name,
            actor.door,
            "schedule.create" if schedule_id is None else "schedule.change",
            [("schedule", schedule.pk)],
            details={"changed": changed},
        )
    return schedule


def schedule_set_active(*, schedule_id: int, active: bool, actor: Actor) -> Schedule:
    """Pause or resume a schedule (resuming plans its next slot after now)."""
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update().filter(pk=schedule_id).first()
        if schedule is None:
            raise ScheduleError(f"schedule {schedule_id} does not exist")
        schedule.active = active
        schedule.next_run_at = _next_run(schedule, timezone.now()) if active else None
        schedule.save(update_fields=["active", "next_run_at", "updated_at"])
        audit.record(actor.name, actor.door, "schedule.resume" if active else "schedule.pause",
                     [("schedule", schedule.pk)])  # fmt: skip
    return schedule


def schedule_delete(*, schedule_id: int, actor: Actor) -> None:
    with transaction.atomic():
        deleted, _ = Schedule.objects.filter(pk=schedule_id).delete()
        if not deleted:
            raise ScheduleError(f"schedule {schedule_id} does not exist")
        audit.record(actor.name, actor.door, "schedule.delete", [("schedule", schedule_id)])


def _products(schedule: Schedule) -> list[tuple[int, str]]:
    products = Product.objects.order_by("pk")
    if not schedule.all_products:
        wanted = [s.lower() for s in split_skus(schedule.skus)]
        products = products.annotate(key=Lower("sku")).filter(key__in=wanted)
    rows = list(products.values_list("pk", "sku")[: MAX_PRODUCTS + 1])
    if not rows:
        raise ScheduleError("no product matches (the tenant has none, or none of the SKUs)")
    if len(rows) > MAX_PRODUCTS:
        raise ScheduleError(f"more than {MAX_PRODUCTS:,} products match")
    return rows


def _start_batch(schedule: Schedule, slot: datetime) -> Batch:
    name = f"{schedule.name} · {slot.astimezone(timing.zone(schedule.timezone)):%Y-%m-%d %H:%M %Z}"
    if schedule.action == Schedule.Action.PLAN:
        values = {f: getattr(schedule, f) for f in EDITABLE}
        params = plan_parameters_of(values).as_job_params()
        params["created_by"] = f"schedule #{schedule.pk}"
        plan = JobSpec(plans.MARKETPLACE, plans.ACTION, None, "", params, schedule.priority,
                       PLAN_MAX_RETRIES)  # fmt: skip
        return batch_create(name=name[:200], jobs=[plan], created_by=f"schedule #{schedule.pk}")
    specs = [
        JobSpec(marketplace, schedule.action, pk, sku, None, schedule.priority)
        for pk, sku in _products(schedule)
        for marketplace in schedule.marketplaces
    ]
    mode = Batch.Mode.SEQUENTIAL if schedule.sequential else Batch.Mode.PARALLEL
    return batch_create(
        name=name[:200], jobs=specs, mode=mode, created_by=f"schedule #{schedule.pk}"
    )


def _fire(schedule: Schedule, slot: datetime, *, by: str = "") -> ScheduleFiring:
    """Start the slot's batch (or skip it) and record the firing. Runs under the
    schedule's row lock, inside the caller's transaction."""
    now = timezone.now()
    previous = schedule.last_batch_id
    running = (
        previous is not None
        and Batch.objects.filter(pk=previous).exclude(status__in=BATCH_TERMINAL).exists()
    )
    batch = None
    if running:
        outcome, message = ScheduleFiring.Outcome.SKIPPED, f"batch #{previous} is still running"
    else:
        try:
            with transaction.atomic():  # a failed start leaves nothing half-made
                batch = _start_batch(schedule, slot)
            outcome, message = ScheduleFiring.Outcome.STARTED, f"started batch #{batch.pk}"
        except (ScheduleError, ValueError, steps.UnknownProvider) as exc:
            outcome, message = ScheduleFiring.Outcome.FAILED, str(exc)[:300]
    firing = ScheduleFiring.objects.create(
        schedule=schedule, slot_at=slot, fired_at=now, outcome=outcome, batch=batch,
        message=message, by=by,
    )  # fmt: skip
    schedule.last_run_at = now
    started = outcome == ScheduleFiring.Outcome.STARTED
    schedule.last_outcome = (message if started else f"{outcome}: {message}")[:300]
    if batch is not None:
        schedule.last_batch = batch
    return firing


def schedules_fire_due(*, now: datetime | None = None, limit: int = 100) -> list[ScheduleFiring]:
    """Fire this tenant's due schedules, each slot once (see the module's docstring)."""
    now = now or timezone.now()
    firings: list[ScheduleFiring] = []
    for _ in range(limit):
        with transaction.atomic():
            schedule = (
                Schedule.objects.select_for_update(skip_locked=True)
                .filter(active=True, next_run_at__lte=now)
                .order_by("next_run_at", "pk")
                .first()
            )
            if schedule is None:
                break
            slot = schedule.next_run_at
            assert slot is not None
            firing = _fire(schedule, slot)
            # Missed slots fold into this one: the next is the first after now.
            schedule.next_run_at = _next_run(schedule, max(now, slot))
            schedule.save(update_fields=["next_run_at", "last_run_at", "last_outcome",
                                         "last_batch", "updated_at"])  # fmt: skip
            firings.append(firing)
    return firings


def schedule_run_now(*, schedule_id: int, actor: Actor) -> ScheduleFiring:
    """Fire one schedule now, outside its slots (its next slot stays); audited."""
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update().filter(pk=schedule_id).first()
        if schedule is None:
            raise ScheduleError(f"schedule {schedule_id} does not exist")
        firing = _fire(schedule, timezone.now(), by=actor.name)
        schedule.save(update_fields=["last_run_at", "last_outcome", "last_batch", "updated_at"])
        audit.record(actor.name, actor.door, "schedule.run_now", [("schedule", schedule.pk)]
                     + ([("batch", firing.batch_id)] if firing.batch_id else []),
                     details={"outcome": firing.outcome, "message": firing.message})  # fmt: skip
    return firing


def tenants_with_due_schedules(now: datetime | None = None) -> list[str]:
    """Schemas with a due schedule, in one query over every tenant schema."""
    return tenants_having(
        "scheduler_schedule", "active AND next_run_at <= %s", [now or timezone.now()]
    )
