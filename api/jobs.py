"""Jobs: create (one batch per request), read, list, cancel, retry, retry from a step, run now.

Each endpoint is one call to the service the admin calls.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.http import HttpRequest
from ninja import Query, Router, Schema, Status
from pydantic import Field

from api import schemas as s
from api.auth import audit, require_write
from api.errors import ApiError, not_found
from api.pagination import MAX_LIMIT, paginate
from orchestration import services
from orchestration.models import JobRun, MarketplaceJob, MarketplaceTask
from orchestration.services.publishing import SelectionError, batch_start, products_select
from orchestration.states import JobStatus

router = Router(tags=["jobs"])

MAX_JOBS_PER_REQUEST = 10_000
ERRORS = {401: s.ErrorOut, 403: s.ErrorOut, 404: s.ErrorOut, 409: s.ErrorOut, 422: s.ErrorOut}


def _job(job_id: int) -> MarketplaceJob:
    job = MarketplaceJob.objects.filter(pk=job_id).first()
    if job is None:
        raise not_found("job", job_id)
    return job


def _detail(job: MarketplaceJob) -> dict:
    tasks = MarketplaceTask.objects.filter(job_id=job.pk).order_by("step_order")
    runs = JobRun.objects.filter(job_id=job.pk).order_by("attempt")
    return {**{f: getattr(job, f) for f in s.JobDetailOut.model_fields if hasattr(job, f)},
            "tasks": list(tasks), "runs": list(runs)}  # fmt: skip


def _job_id_path(job_id: int) -> int:
    if not 1 <= job_id <= 2**62:
        raise not_found("job", job_id)
    return job_id


@router.post("", response={201: s.JobsCreatedOut, **ERRORS, 413: s.ErrorOut})
def create_jobs(request: HttpRequest, body: s.JobsCreateIn):
    """Create a batch with one job per product and marketplace, queued at once (201)."""
    who = require_write(request)
    try:
        products = products_select(
            product_ids=body.products.ids,
            skus=body.products.skus,
            all_products=body.products.all,
            limit=MAX_JOBS_PER_REQUEST // len(set(body.marketplaces)),
        )
    except SelectionError as exc:
        status = 413 if "limit" in exc.details else 422
        code = "too_large" if status == 413 else "validation_error"
        raise ApiError(status, code, exc.message, details=exc.details) from None
    try:
        with transaction.atomic():
            batch = batch_start(
                marketplaces=body.marketplaces,
                action=body.action,
                products=products,
                mode=body.mode,
                priority=body.priority,
                max_retries=body.max_retries,
                name=body.name,
                created_by=who.door,
            )
            audit(request, "batch.start", [("batch", batch.pk)], count=batch.total_jobs,
                  details={"marketplaces": body.marketplaces, "action": body.action})  # fmt: skip
    except SelectionError as exc:
        raise ApiError(422, "validation_error", exc.message, details=exc.details) from None
    job_ids = list(batch.jobs.order_by("sequence").values_list("pk", flat=True))
    return Status(201, {"batch_id": batch.pk, "job_ids": job_ids, "jobs": len(job_ids)})


class JobFilters(Schema):
    status: JobStatus | None = None
    marketplace: str | None = Field(default=None, max_length=32)
    action: str | None = Field(default=None, max_length=16)
    batch_id: int | None = Field(default=None, ge=1, le=2**62)
    sku: str | None = Field(default=None, max_length=64)
    created_after: datetime | None = None
    cursor: str | None = Field(default=None, max_length=40)
    limit: int = Field(default=50, ge=1, le=MAX_LIMIT)


@router.get("", response={200: s.JobPage, 401: s.ErrorOut, 422: s.ErrorOut})
def list_jobs(request: HttpRequest, filters: Query[JobFilters]):
    """Jobs, newest first, filtered; pass ``next_cursor`` back as ``cursor`` for the next page."""
    jobs = MarketplaceJob.objects.all()
    if filters.status:
        jobs = jobs.filter(status=filters.status)
    if filters.marketplace:
        jobs = jobs.filter(marketplace=filters.marketplace)
    if filters.action:
        jobs = jobs.filter(action=filters.action)
    if filters.batch_id:
        jobs = jobs.filter(batch_id=filters.batch_id)
    if filters.sku:
        jobs = jobs.filter(sku__iexact=filters.sku)
    if filters.created_after:
        jobs = jobs.filter(created_at__gt=filters.created_after)
    items, next_cursor = paginate(jobs, cursor=filters.cursor, limit=filters.limit)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{int:job_id}", response={200: s.JobDetailOut, 401: s.ErrorOut, 404: s.ErrorOut})
def get_job(request: HttpRequest, job_id: int):
    """A job with its steps (status, output) and runs (attempts), oldest attempt first."""
    return _detail(_job(_job_id_path(job_id)))


def _act(request: HttpRequest, job_id: int, verb: str, action) -> dict:
    require_write(request)
    _job(_job_id_path(job_id))
    try:
        with transaction.atomic():
            job = action(job_id)
            audit(request, f"job.{verb}", [("job", job_id)])
    except services.JobError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    return _detail(job)


@router.delete("/{int:job_id}", response={202: s.JobDetailOut, **ERRORS})
def cancel_job(request: HttpRequest, job_id: int):
    """Cancel: a waiting job at once; a running one at its next step boundary (202 either way;
    ``cancel_requested`` says a running job was asked to stop). 409 if it has already ended."""
    return Status(202, _act(request, job_id, "cancel", lambda pk: services.job_cancel(job_id=pk)))


@router.post("/{int:job_id}/retry", response={200: s.JobDetailOut, **ERRORS})
def retry_job(request: HttpRequest, job_id: int):
    """Retry a failed or cancelled job from its first step not completed."""
    return _act(request, job_id, "retry", lambda pk: services.job_retry(job_id=pk))


@router.post("/{int:job_id}/retry-from-step", response={200: s.JobDetailOut, **ERRORS})
def retry_job_from_step(request: HttpRequest, job_id: int, body: s.RetryFromStepIn):
    """Retry re-running completed steps from ``step_order`` on."""
    return _act(
        request,
        job_id,
        "retry_from_step",
        lambda pk: services.job_retry_from_step(job_id=pk, step_order=body.step_order),
    )


@router.post("/{int:job_id}/run-now", response={200: s.JobDetailOut, **ERRORS})
def run_job_now(request: HttpRequest, job_id: int):
    """Run ahead of everything queued on its resource (a reservation); retries a failed job."""
    return _act(request, job_id, "run_now", lambda pk: services.job_run_now(job_id=pk))
