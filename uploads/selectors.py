"""Reads: an upload's progress (what a client needs to resume) and its import report."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.db.models import Sum

from orchestration.models import MarketplaceTask
from uploads import importing, storage
from uploads.models import Upload
from uploads.services import UploadNotFound


def upload_get(upload_id: uuid.UUID | str) -> Upload:
    """The current tenant's upload, or ``UploadNotFound`` (another tenant's ids look the same)."""
    upload = Upload.objects.select_related("import_job").filter(pk=upload_id).first()
    if upload is None:
        raise UploadNotFound(f"upload {upload_id} not found")
    return upload


def upload_progress(upload: Upload) -> dict[str, Any]:
    parts = list(upload.parts.order_by("index").values_list("index", flat=True))
    received = upload.parts.aggregate(total=Sum("size"))["total"] or 0
    if upload.state == Upload.State.COMPLETED:
        received = upload.size
    job = upload.import_job
    return {
        "upload_id": str(upload.pk),
        "filename": upload.filename,
        "size": upload.size,
        "sha256": upload.sha256,
        "part_size": upload.part_size,
        "parts": upload.part_count,
        "state": upload.state,
        "format": upload.format or None,
        "error": upload.error_message or None,
        "parts_received": parts,
        "parts_missing_count": upload.part_count - len(parts),
        "bytes_received": received,
        "progress_percent": (100 * received) // upload.size if upload.size else 0,
        "created_at": upload.created_at,
        "completed_at": upload.completed_at,
        "import_job_id": upload.import_job_id,
        "import_status": job.status if job else None,
        "publish_batch_id": upload.publish_batch_id,
    }


def import_report(upload: Upload) -> dict[str, Any]:
    """What the import did so far: the validation summary (rows read, valid, rejected with
    the first reasons), the upsert counts and the publish batch, from the job's steps."""
    outputs: dict[str, Any] = {}
    if upload.import_job_id:
        outputs = {
            step: output or {}
            for step, output in MarketplaceTask.objects.filter(
                job_id=upload.import_job_id, status="completed"
            ).values_list("step_type", "output")
        }
    summary = outputs.get("validate_rows")
    if summary is None:  # validated, but the step's record not written yet (or no job)
        path = storage.upload_dir(upload.pk) / storage.SUMMARY
        summary = json.loads(path.read_text()) if path.exists() else {}
    upsert = outputs.get("upsert_products", {})
    batch = outputs.get("create_batch", {})
    job = upload.import_job
    return {
        "upload_id": str(upload.pk),
        "filename": upload.filename,
        "import_job_id": upload.import_job_id,
        "import_status": job.status if job else None,
        "import_error": (job.error_message or None) if job else None,
        "rows_read": summary.get("rows_read"),
        "valid": summary.get("valid"),
        "rejected": summary.get("rejected"),
        "errors": summary.get("errors", []),
        "created": upsert.get("created"),
        "updated": upsert.get("updated"),
        "unchanged": upsert.get("unchanged"),
        "publish_batch_id": batch.get("batch_id", upload.publish_batch_id),
        "publish_jobs": batch.get("jobs"),
        "rejected_csv_url": importing.report_urls(str(upload.pk))["rejected_csv_url"],
    }


def rejected_rows_path(upload: Upload):
    """The rejected rows' CSV (line, SKU, reasons), or None before validation ran."""
    path = storage.upload_dir(upload.pk) / storage.REJECTED
    return path if path.exists() else None
