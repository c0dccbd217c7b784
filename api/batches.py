"""Batches: read (progress and counts), list, cancel, resume."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count
from django.http import HttpRequest
from ninja import Query, Router, Schema, Status
from pydantic import Field

from api import schemas as s
from api.auth import audit, require_write
from api.errors import ApiError, not_found
from api.pagination import MAX_LIMIT, paginate
from orchestration import services
from orchestration.models import Batch, MarketplaceJob
from orchestration.states import BATCH_TERMINAL, BatchStatus

router = Router(tags=["batches"])
ERRORS = {401: s.ErrorOut, 403: s.ErrorOut, 404: s.ErrorOut, 409: s.ErrorOut, 422: s.ErrorOut}


def _batch(batch_id: int) -> Batch:
    batch = Batch.objects.filter(pk=batch_id).first() if 1 <= batch_id <= 2**62 else None
    if batch is None:
        raise not_found("batch", batch_id)
    return batch


def _detail(batch: Batch) -> dict:
    counts = dict(
        MarketplaceJob.objects.filter(batch_id=batch.pk)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    out = {f: getattr(batch, f) for f in s.BatchOut.model_fields}
    return {**out, "counts": {str(k): v for k, v in counts.items()}}


class BatchFilters(Schema):
    status: BatchStatus | None = None
    cursor: str | None = Field(default=None, max_length=40)
    limit: int = Field(default=50, ge=1, le=MAX_LIMIT)


@router.get("", response={200: s.BatchPage, 401: s.ErrorOut, 422: s.ErrorOut})
def list_batches(request: HttpRequest, filters: Query[BatchFilters]):
    """Batches, newest first; pass ``next_cursor`` back as ``cursor``."""
    batches = Batch.objects.all()
    if filters.status:
        batches = batches.filter(status=filters.status)
    items, next_cursor = paginate(batches, cursor=filters.cursor, limit=filters.limit)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{int:batch_id}", response={200: s.BatchDetailOut, 401: s.ErrorOut, 404: s.ErrorOut})
def get_batch(request: HttpRequest, batch_id: int):
    """A batch's status, progress (finished jobs / total) and job counts by status."""
    return _detail(_batch(batch_id))


@router.post("/{int:batch_id}/cancel", response={202: s.BatchDetailOut, **ERRORS})
def cancel_batch(request: HttpRequest, batch_id: int):
    """Cancel every job of the batch that has not ended (running ones at a step boundary)."""
    require_write(request)
    batch = _batch(batch_id)
    if batch.status in BATCH_TERMINAL:
        raise ApiError(409, "conflict", f"batch {batch_id} is {batch.status}: nothing to cancel")
    with transaction.atomic():
        batch = services.batch_cancel(batch_id=batch_id)
        audit(request, "batch.cancel", [("batch", batch_id)])
    return Status(202, _detail(batch))


@router.post("/{int:batch_id}/resume", response={200: s.BatchDetailOut, **ERRORS})
def resume_batch(request: HttpRequest, batch_id: int):
    """Resume a stopped sequential group or a cancelled/partial batch."""
    require_write(request)
    _batch(batch_id)
    try:
        with transaction.atomic():
            batch = services.batch_resume(batch_id=batch_id)
            audit(request, "batch.resume", [("batch", batch_id)])
    except services.JobError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    return _detail(batch)
