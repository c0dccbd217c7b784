"""Schedules over the JSON API: list, read, create, change, pause/resume, run now, delete.
Thin over ``scheduler.services`` (validation, next run, audit with the token's name)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from api import schemas as s
from api.auth import principal, require_write
from api.errors import ApiError, not_found
from audit.services import Actor
from scheduler import services, timing
from scheduler.models import Schedule, ScheduleFiring

router = Router(tags=["schedules"])
ERRORS = {401: s.ErrorOut, 403: s.ErrorOut, 404: s.ErrorOut, 422: s.ErrorOut}


class ScheduleIn(Schema):
    name: str = Field(max_length=200)
    action: str = "publish"
    marketplaces: list[str] = Field(default_factory=list, max_length=20)
    plan: dict[str, Any] = Field(default_factory=dict, description="Stock plan: preset + overrides")
    all_products: bool = False
    skus: list[str] = Field(default_factory=list, max_length=100_000)
    priority: int = Field(default=0, ge=-100, le=100)
    sequential: bool = False
    cron: str = Field(default="", max_length=120)
    every_minutes: int | None = None
    timezone: str = Field(default="UTC", max_length=64)
    active: bool = True


class SchedulePatch(Schema):
    name: str | None = Field(default=None, max_length=200)
    action: str | None = None
    marketplaces: list[str] | None = None
    plan: dict[str, Any] | None = None
    all_products: bool | None = None
    skus: list[str] | None = None
    priority: int | None = Field(default=None, ge=-100, le=100)
    sequential: bool | None = None
    cron: str | None = Field(default=None, max_length=120)
    every_minutes: int | None = None
    timezone: str | None = Field(default=None, max_length=64)
    active: bool | None = None


class ScheduleOut(Schema):
    id: int
    name: str
    action: str
    marketplaces: list[str]
    plan: dict[str, Any]
    all_products: bool
    skus: list[str]
    priority: int
    sequential: bool
    cron: str
    every_minutes: int | None
    timezone: str
    active: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_batch_id: int | None
    last_outcome: str
    next_runs: list[datetime]


class FiringOut(Schema):
    schedule_id: int
    slot_at: datetime
    outcome: str
    batch_id: int | None
    message: str


def _actor(request: HttpRequest) -> Actor:
    who = principal(request)
    return Actor(who.label, who.door)


def _out(schedule: Schedule) -> dict:
    from django.utils import timezone

    upcoming = (
        timing.upcoming(cron=schedule.cron, every_minutes=schedule.every_minutes,
                        timezone=schedule.timezone, after=timezone.now())
        if schedule.active else []
    )  # fmt: skip
    return {
        **{f: getattr(schedule, f) for f in ScheduleOut.model_fields if hasattr(schedule, f)},
        "skus": services.split_skus(schedule.skus),
        "next_runs": upcoming,
    }


def _schedule(schedule_id: int) -> Schedule:
    found = Schedule.objects.filter(pk=schedule_id).first() if 1 <= schedule_id <= 2**62 else None
    if found is None:
        raise not_found("schedule", schedule_id)
    return found


def _invalid(exc: services.ScheduleError) -> ApiError:
    return ApiError(422, "validation_error", exc.message, details={"field": exc.field})


@router.get("", response={200: list[ScheduleOut], 401: s.ErrorOut})
def list_schedules(request: HttpRequest):
    """Every schedule of this tenant, next due first, with its next five run times."""
    return [_out(x) for x in Schedule.objects.order_by("next_run_at", "pk")[:500]]


@router.get("/{int:schedule_id}", response={200: ScheduleOut, 401: s.ErrorOut, 404: s.ErrorOut})
def get_schedule(request: HttpRequest, schedule_id: int):
    return _out(_schedule(schedule_id))


@router.post("", response={201: ScheduleOut, **ERRORS})
def create_schedule(request: HttpRequest, body: ScheduleIn):
    """A cron expression (five fields, in ``timezone``) or ``every_minutes``, not both."""
    require_write(request)
    values = body.dict()
    values["skus"] = "\n".join(values["skus"])
    try:
        schedule = services.schedule_save(actor=_actor(request), **values)
    except services.ScheduleError as exc:
        raise _invalid(exc) from exc
    return Status(201, _out(schedule))


@router.patch("/{int:schedule_id}", response={200: ScheduleOut, **ERRORS})
def change_schedule(request: HttpRequest, schedule_id: int, body: SchedulePatch):
    require_write(request)
    _schedule(schedule_id)
    values = body.dict(exclude_unset=True)
    if "skus" in values:
        values["skus"] = "\n".join(values["skus"] or [])
    try:
        schedule = services.schedule_save(actor=_actor(request), schedule_id=schedule_id, **values)
    except services.ScheduleError as exc:
        raise _invalid(exc) from exc
    return _out(schedule)


@router.post("/{int:schedule_id}/run", response={200: FiringOut, **ERRORS})
def run_schedule(request: HttpRequest, schedule_id: int):
    """Fire it now (its next slot stays); ``outcome`` says whether a batch started."""
    require_write(request)
    _schedule(schedule_id)
    firing: ScheduleFiring = services.schedule_run_now(
        schedule_id=schedule_id, actor=_actor(request)
    )
    return firing


@router.post("/{int:schedule_id}/pause", response={200: ScheduleOut, **ERRORS})
def pause_schedule(request: HttpRequest, schedule_id: int):
    require_write(request)
    _schedule(schedule_id)
    return _out(services.schedule_set_active(schedule_id=schedule_id, active=False,
                                             actor=_actor(request)))  # fmt: skip


@router.post("/{int:schedule_id}/resume", response={200: ScheduleOut, **ERRORS})
def resume_schedule(request: HttpRequest, schedule_id: int):
    require_write(request)
    _schedule(schedule_id)
    return _out(services.schedule_set_active(schedule_id=schedule_id, active=True,
                                             actor=_actor(request)))  # fmt: skip


@router.delete("/{int:schedule_id}", response={204: None, **ERRORS})
def delete_schedule(request: HttpRequest, schedule_id: int):
    require_write(request)
    _schedule(schedule_id)
    services.schedule_delete(schedule_id=schedule_id, actor=_actor(request))
    return Status(204, None)
