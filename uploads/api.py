"""The uploads part of the JSON API (mounted by api.main under /api/uploads).

A thin door over ``uploads.services`` / ``uploads.selectors``: parse, call one service,
map its ``UploadError`` to the API's JSON error. A part's body is raw bytes, read from the
request in 1 MiB chunks (never ``request.body``): ninja parses no body for that route
and its OpenAPI entry documents ``application/octet-stream``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import FileResponse, HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from api.auth import require_write
from api.errors import ApiError
from uploads import selectors, services

router = Router(tags=["uploads"])


class ErrorOut(Schema):
    error: str
    message: str
    request_id: str | None
    details: Any = None


ERRORS: dict[int, Any] = {code: ErrorOut for code in (400, 401, 403, 404, 409, 411, 413, 422)}


class UploadIn(Schema):
    filename: str = Field(min_length=1, max_length=1000)
    size: int = Field(ge=1, le=2**50, description="bytes")
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="of the whole file, hex")
    part_size: int | None = Field(
        default=None, ge=1, le=2**31, description="bytes; default 8 MiB (1 MiB to 64 MiB)"
    )


class UploadOut(Schema):
    upload_id: uuid.UUID
    filename: str
    size: int
    sha256: str
    part_size: int
    parts: int
    state: str
    format: str | None
    error: str | None
    parts_received: list[int]
    parts_missing_count: int
    bytes_received: int
    progress_percent: int
    created_at: Any
    completed_at: Any = None
    import_job_id: int | None
    import_status: str | None
    publish_batch_id: int | None


class PartOut(Schema):
    upload_id: uuid.UUID
    part: int
    stored: bool = Field(description="false: the same bytes were already stored")


class ImportIn(Schema):
    marketplaces: list[str] = Field(
        default_factory=list, max_length=10, description="publish the imported products there"
    )


class CompleteIn(ImportIn):
    start_import: bool = Field(
        default=False, description="start the import (implied when marketplaces are named)"
    )


class ReportError(Schema):
    line: int
    sku: str
    errors: list[str]


class ReportOut(Schema):
    upload_id: uuid.UUID
    filename: str
    import_job_id: int | None
    import_status: str | None
    import_error: str | None
    rows_read: int | None
    valid: int | None
    rejected: int | None
    errors: list[ReportError]
    created: int | None
    updated: int | None
    unchanged: int | None
    publish_batch_id: int | None
    publish_jobs: int | None
    rejected_csv_url: str


def _upload_errors(view: Callable) -> Callable:
    @wraps(view)
    def wrapper(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except services.UploadError as exc:
            raise ApiError(exc.status, exc.code, exc.message, details=exc.details) from None

    return wrapper


@router.post("", response={201: UploadOut, **ERRORS})
@_upload_errors
def create_upload(request: HttpRequest, body: UploadIn):
    """Declare a file; send its parts with PUT …/parts/{n} (1 to ``parts``)."""
    who = require_write(request)
    upload = services.upload_create(
        filename=body.filename, size=body.size, sha256=body.sha256,
        part_size=body.part_size, created_by=who.label,
    )  # fmt: skip
    return Status(201, selectors.upload_progress(upload))


@router.get("/{uuid:upload_id}", response={200: UploadOut, **ERRORS})
@_upload_errors
def get_upload(request: HttpRequest, upload_id: uuid.UUID):
    """Parts received, bytes, progress: what a client needs to resume."""
    return selectors.upload_progress(selectors.upload_get(upload_id))


_PART_BODY = {
    "requestBody": {
        "required": True,
        "description": "the part's bytes (part_size bytes; the last part the rest)",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    "parameters": [
        {
            "name": "X-Part-SHA256",
            "in": "header",
            "required": True,
            "description": "SHA-256 of this part's bytes, hex",
            "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
        }
    ],
}


@router.put(
    "/{uuid:upload_id}/parts/{n}",
    response={200: PartOut, 201: PartOut, **ERRORS},
    openapi_extra=_PART_BODY,
)
@_upload_errors
def put_part(request: HttpRequest, upload_id: uuid.UUID, n: int):
    """Store part ``n``: 201 stored, 200 the same bytes were already there, 409 other bytes
    are stored, 400 the bytes do not match X-Part-SHA256 (nothing kept)."""
    require_write(request)
    raw_length = request.META.get("CONTENT_LENGTH") or ""
    try:
        length: int | None = int(raw_length) if raw_length else None
    except ValueError:
        raise ApiError(400, "bad_request", "Content-Length is not a number") from None
    if length is not None and length < 0:
        raise ApiError(400, "bad_request", "Content-Length is negative")
    if not 1 <= n <= 1_000_000:
        raise ApiError(422, "validation_error", f"part {n} is out of range",
                       details={"field": "n"})  # fmt: skip
    result = services.upload_put_part(
        upload_id=upload_id, index=n, stream=request, length=length,  # type: ignore[arg-type]
        sha256=request.headers.get("X-Part-SHA256", ""),
    )  # fmt: skip
    body = {"upload_id": upload_id, "part": n, "stored": result.created}
    return Status(201 if result.created else 200, body)


@router.post("/{uuid:upload_id}/complete", response={200: UploadOut, **ERRORS})
@_upload_errors
def complete_upload(request: HttpRequest, upload_id: uuid.UUID, body: CompleteIn | None = None):
    """Assemble and verify the whole file's SHA-256 (422 on a mismatch: nothing imported);
    with ``start_import`` or ``marketplaces``, start the import job too."""
    who = require_write(request)
    upload = services.upload_complete(upload_id=upload_id)
    if body is not None and (body.start_import or body.marketplaces):
        upload = services.upload_start_import(
            upload_id=upload_id,
            marketplaces=body.marketplaces,
            created_by=who.label,
            door=who.door,
        )
    return selectors.upload_progress(selectors.upload_get(upload.pk))


@router.post("/{uuid:upload_id}/import", response={202: UploadOut, **ERRORS})
@_upload_errors
def start_import(request: HttpRequest, upload_id: uuid.UUID, body: ImportIn | None = None):
    """Start the import job of a complete upload (asking again returns the same job)."""
    who = require_write(request)
    services.upload_start_import(
        upload_id=upload_id,
        marketplaces=body.marketplaces if body else [],
        created_by=who.label,
        door=who.door,
    )
    return Status(202, selectors.upload_progress(selectors.upload_get(upload_id)))


@router.get("/{uuid:upload_id}/report", response={200: ReportOut, **ERRORS})
@_upload_errors
def import_report(request: HttpRequest, upload_id: uuid.UUID):
    """Rows read, imported (created / updated / unchanged), rejected with the first
    reasons; every rejected row is in ``report.csv``."""
    return selectors.import_report(selectors.upload_get(upload_id))


@router.get(
    "/{uuid:upload_id}/report.csv",
    response={404: ErrorOut, 401: ErrorOut},
    openapi_extra={
        "responses": {
            "200": {
                "description": "rejected rows: line, sku, errors",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        }
    },
)
@_upload_errors
def rejected_rows(request: HttpRequest, upload_id: uuid.UUID):
    """Every rejected row (line number, SKU, reasons) as CSV."""
    upload = selectors.upload_get(upload_id)
    path = selectors.rejected_rows_path(upload)
    if path is None:
        raise ApiError(404, "not_found", f"upload {upload_id} has no import report yet")
    return FileResponse(
        open(path, "rb"),
        content_type="text/csv",
        as_attachment=True,
        filename=f"{upload.filename.rsplit('.', 1)[0]}-rejected.csv",
    )


@router.delete("/{uuid:upload_id}", response={204: None, **ERRORS})
@_upload_errors
def delete_upload(request: HttpRequest, upload_id: uuid.UUID):
    """Abort an upload (or drop a finished one) and free its disk; 409 while it is being
    imported."""
    require_write(request)
    services.upload_abort(upload_id=upload_id)
    return Status(204, None)
