"""Bulk operations over the JSON API: start one over a job filter (202: a worker carries it
out), read its progress and result, stop it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status

from api import schemas as s
from api.auth import principal, require_write
from api.errors import ApiError, not_found
from audit.services import Actor
from operations import services
from operations.models import Operation

router = Router(tags=["operations"])
ERRORS = {401: s.ErrorOut, 403: s.ErrorOut, 404: s.ErrorOut, 409: s.ErrorOut, 422: s.ErrorOut}


class OperationIn(Schema):
    kind: str
    filter: dict[str, Any] = {}


class OperationOut(Schema):
    id: int
    kind: str
    status: str
    job_filter: dict[str, Any]
    total: int
    processed: int
    succeeded: int
    skipped: int
    skipped_reasons: dict[str, int]
    percent: int
    cancel_requested: bool
    actor: str
    door: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _operation(operation_id: int) -> Operation:
    found = (
        Operation.objects.filter(pk=operation_id).first() if 1 <= operation_id <= 2**62 else None
    )
    if found is None:
        raise not_found("operation", operation_id)
    return found


def _actor(request: HttpRequest) -> Actor:
    who = principal(request)
    return Actor(who.label, who.door)


@router.post("", response={202: OperationOut, **ERRORS})
def start_operation(request: HttpRequest, body: OperationIn):
    """``kind``: retry, cancel or run_now; ``filter``: status (list), marketplace, action,
    batch, q, created_after, created_before, ids. Returns at once; poll the operation."""
    require_write(request)
    try:
        operation = services.operation_create(
            kind=body.kind, job_filter=body.filter, actor=_actor(request)
        )
    except services.OperationError as exc:
        raise ApiError(422, "validation_error", exc.message, details={"field": exc.field}) from exc
    return Status(202, operation)


@router.get("", response={200: list[OperationOut], 401: s.ErrorOut})
def list_operations(request: HttpRequest):
    """The latest 100 operations, newest first."""
    return list(Operation.objects.order_by("-created_at", "-id")[:100])


@router.get("/{int:operation_id}", response={200: OperationOut, 401: s.ErrorOut, 404: s.ErrorOut})
def get_operation(request: HttpRequest, operation_id: int):
    return _operation(operation_id)


@router.post("/{int:operation_id}/cancel", response={202: OperationOut, **ERRORS})
def cancel_operation(request: HttpRequest, operation_id: int):
    """Stop it before its next chunk (jobs already handled stay handled)."""
    require_write(request)
    _operation(operation_id)
    try:
        operation = services.operation_cancel(operation_id=operation_id, actor=_actor(request))
    except services.OperationError as exc:
        raise ApiError(409, "conflict", exc.message) from exc
    return Status(202, operation)
