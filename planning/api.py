"""Stock plans in the JSON API (mounted by api.main under /api/plans).

``POST /api/plans`` takes a preset name and/or parameters (flat, or under ``overrides``);
they are validated by the same schema as the admin form and the command
(``planning.params``) before anything is queued: invalid → 422 with the field errors.
``GET /api/plans/{id}`` answers the job's status and each step's output.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field, ValidationError

from api.auth import require_write
from api.errors import ApiError, not_found
from api.schemas import ErrorOut
from planning import selectors, services
from planning.params import PRESETS, field_errors, plan_parameters

router = Router(tags=["plans"])
ERRORS = {401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut}


class PlanCreateIn(Schema):
    """A preset and/or parameters; given parameters override the preset's."""

    preset: str | None = Field(default=None, max_length=40, description=f"One of {list(PRESETS)}")
    category: str | None = Field(default=None, max_length=120)
    season_start: date | None = None
    season_end: date | None = None
    horizon_weeks: int | None = None
    strategy: str | None = Field(default=None, max_length=20)
    dc_holdback: float | None = None
    safety_multiplier: float | None = None
    pack_size: int | None = None
    marketplaces: list[str] | None = Field(default=None, max_length=10)
    overrides: dict[str, Any] | None = Field(default=None, description="The same fields, nested")


class PlanCreatedOut(Schema):
    job_id: int
    status: str
    params: dict[str, Any]


class PlanStepOut(Schema):
    order: int
    step: str
    status: str
    error: str
    output: dict[str, Any] | None
    started_at: datetime | None
    completed_at: datetime | None


class PlanOut(Schema):
    id: int
    status: str
    error: str
    params: dict[str, Any]
    retry_count: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    push_batch_id: int | None
    steps: list[PlanStepOut]


class PlanSummaryOut(Schema):
    id: int
    status: str
    category: str
    preset: str
    created_at: datetime


@router.post("", response={201: PlanCreatedOut, **ERRORS})
def create_plan(request: HttpRequest, body: PlanCreateIn):
    """Validate the parameters and queue a plan job (201 with its id); nothing is queued on 422."""
    who = require_write(request)
    given = body.dict(exclude_unset=True)
    preset = given.pop("preset", None)
    overrides = {**(given.pop("overrides", None) or {}), **given}
    try:
        params = plan_parameters(preset=preset, overrides=overrides)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", "invalid plan parameters",
                       details=field_errors(exc)) from None  # fmt: skip
    job = services.plan_start(params=params, created_by=who.door)
    return Status(201, {"job_id": job.pk, "status": job.status, "params": job.params})


@router.get("", response={200: list[PlanSummaryOut], **ERRORS})
def list_plans(request: HttpRequest):
    """The 50 latest plans, newest first."""
    jobs = selectors.plan_jobs().order_by("-created_at", "-id")[:50]
    return [
        {"id": j.pk, "status": j.status, "category": j.params.get("category", ""),
         "preset": j.params.get("preset", ""), "created_at": j.created_at}
        for j in jobs
    ]  # fmt: skip


@router.get("/presets", response={200: dict[str, dict[str, Any]], **ERRORS})
def presets(request: HttpRequest):
    """The shipped presets (what each sets)."""
    return PRESETS


@router.get("/{int:plan_id}", response={200: PlanOut, **ERRORS})
def get_plan(request: HttpRequest, plan_id: int):
    """A plan's status, parameters and each step's output (forecast, quantities, push)."""
    job = selectors.plan_jobs().filter(pk=plan_id).first() if 0 < plan_id <= 2**62 else None
    if job is None:
        raise not_found("plan", plan_id)
    return selectors.plan_detail(job)
