"""Uploads: create, complete (assemble + verify), abort, expire, import; a part is
received by ``uploads.parts`` and the errors are ``uploads.errors`` (both importable from here).

The only writers of ``Upload`` / ``UploadPart`` rows and of the files under
``storage.upload_dir``. Doors (API, admin, command, tasks) call these and nothing else.

Locks: ``complete``, ``abort`` and ``expire`` take the upload's row ``FOR UPDATE``, so they
wait for parts in flight (which hold it ``FOR SHARE``, see ``uploads.parts``) and a part
arriving after them finds the upload no longer receiving.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Sequence
from datetime import timedelta
from functools import partial

from django.db import connection, transaction
from django.db.models import Max, Sum
from django.utils import timezone

from audit.services import record
from orchestration import steps
from orchestration.services import job_create
from orchestration.states import JOB_TERMINAL
from tenants.db import current_schema
from uploads import conf, storage
from uploads.errors import (
    LengthRequired,
    PartChecksumError,
    UploadChecksumError,
    UploadConflict,
    UploadError,
    UploadInvalid,
    UploadNotFound,
    UploadTooLarge,
)
from uploads.models import Upload
from uploads.parts import PartResult, check_sha256, upload_put_part

__all__ = [
    "LengthRequired",
    "PartChecksumError",
    "PartResult",
    "UploadChecksumError",
    "UploadConflict",
    "UploadError",
    "UploadInvalid",
    "UploadNotFound",
    "UploadTooLarge",
    "marketplaces_check",
    "upload_abort",
    "upload_complete",
    "upload_create",
    "upload_put_part",
    "upload_start_import",
    "uploads_expire_stale",
]

logger = logging.getLogger(__name__)

CATALOG = "catalog"  # the import's "marketplace" (its step provider, see uploads.importing)


def _plan_parts(size: int, part_size: int | None) -> tuple[int, int]:
    smallest, largest, most = (conf.get(k) for k in ("MIN_PART_SIZE", "MAX_PART_SIZE", "MAX_PARTS"))
    if part_size is None:
        part_size = max(conf.get("DEFAULT_PART_SIZE"), math.ceil(size / most))
        part_size = min(max(part_size, smallest), largest)
    elif not smallest <= part_size <= largest:
        raise UploadInvalid(
            f"part_size must be between {smallest} and {largest} bytes",
            details={"field": "part_size", "min": smallest, "max": largest},
        )
    count = max(1, math.ceil(size / part_size))
    if count > most:
        raise UploadInvalid(
            f"{count} parts of {part_size} bytes; at most {most} parts: use bigger parts",
            details={"field": "part_size", "max_parts": most},
        )
    return part_size, count


def upload_create(
    *, filename: str, size: int, sha256: str, part_size: int | None = None, created_by: str = ""
) -> Upload:
    """Declare a file: its parts are then sent with ``upload_put_part``.

    Refused with ``UploadTooLarge`` when the tenant's kept uploads (receiving or complete)
    plus this one exceed ``UPLOADS_TENANT_QUOTA_BYTES``.
    """
    if size < 1:
        raise UploadInvalid("size must be at least 1 byte", details={"field": "size"})
    sha256 = check_sha256(sha256, what="sha256")
    part_size, count = _plan_parts(size, part_size)
    quota = conf.get("TENANT_QUOTA_BYTES")
    with transaction.atomic():
        # One creation at a time per tenant, so two cannot both fit in the last free bytes.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                           [f"uploads-quota:{current_schema()}"])  # fmt: skip
        used = (
            Upload.objects.filter(
                state__in=[Upload.State.RECEIVING, Upload.State.COMPLETED]
            ).aggregate(total=Sum("size"))["total"]
            or 0
        )
        if used + size > quota:
            raise UploadTooLarge(
                f"this upload ({size} bytes) would exceed the tenant's upload quota "
                f"({quota} bytes, {used} in use); delete finished uploads first",
                details={"quota_bytes": quota, "used_bytes": used, "size": size},
            )
        upload = Upload.objects.create(
            filename=storage.sanitize_filename(filename),
            size=size,
            sha256=sha256,
            part_size=part_size,
            part_count=count,
            created_by=created_by[:150],
        )
        storage.create_data_file(upload.pk, size)
    return upload


def _get_locked(upload_id: uuid.UUID) -> Upload:
    upload = Upload.objects.select_for_update().filter(pk=upload_id).first()
    if upload is None:
        raise UploadNotFound(f"upload {upload_id} not found")
    return upload


def upload_complete(*, upload_id: uuid.UUID) -> Upload:
    """Every part received → verify the whole file's SHA-256 and record the file.

    Already complete: returned as is. Parts missing: ``UploadConflict`` listing them.
    A whole-file mismatch marks the upload FAILED, frees its disk and raises
    ``UploadChecksumError`` (nothing can be imported from it).
    """
    with transaction.atomic():
        upload = _get_locked(upload_id)
        if upload.state == Upload.State.COMPLETED:
            return upload
        if upload.state != Upload.State.RECEIVING:
            raise UploadConflict(
                f"upload {upload_id} is {upload.state}", details={"state": upload.state}
            )
        have = set(upload.parts.values_list("index", flat=True))
        missing = [i for i in range(1, upload.part_count + 1) if i not in have]
        if missing:
            raise UploadConflict(
                f"{len(missing)} of {upload.part_count} parts are missing",
                details={"missing": missing[:1000], "missing_count": len(missing)},
            )
        path = storage.upload_dir(upload_id) / storage.DATA
        actual = storage.file_sha256(path)
        now = timezone.now()
        if actual != upload.sha256:
            upload.state, upload.ended_at = Upload.State.FAILED, now
            upload.error_message = (
                f"the assembled file hashes to {actual}, not to the declared sha256 "
                f"{upload.sha256}; nothing was imported, upload the file again"
            )
            upload.save(update_fields=["state", "ended_at", "error_message"])
            transaction.on_commit(lambda: storage.remove_upload_files(upload_id))
            failed = upload
        else:
            storage.sync_file(path)
            upload.state, upload.completed_at = Upload.State.COMPLETED, now
            upload.format = _detect_format(upload.filename, path)
            upload.save(update_fields=["state", "completed_at", "format"])
            failed = None
    if failed is not None:
        raise UploadChecksumError(
            failed.error_message, details={"expected": failed.sha256, "actual": actual}
        )
    return upload


def _detect_format(filename: str, path) -> str:
    lowered = filename.lower()
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return Upload.Format.JSONL
    if lowered.endswith((".csv", ".tsv", ".txt")):
        return Upload.Format.CSV
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return Upload.Format.JSONL if head.startswith(b"{") else Upload.Format.CSV


def upload_abort(*, upload_id: uuid.UUID) -> Upload:
    """Stop an upload (or drop a finished one) and free its disk. Refused while its import
    job is queued or running."""
    with transaction.atomic():
        upload = _get_locked(upload_id)
        if upload.import_job_id is not None:
            status = upload.import_job.status if upload.import_job else None
            if status is not None and status not in JOB_TERMINAL:
                raise UploadConflict(
                    f"upload {upload_id} is being imported by job {upload.import_job_id} "
                    f"({status}); cancel the job first",
                    details={"job_id": upload.import_job_id, "job_status": status},
                )
        if upload.state in (Upload.State.RECEIVING, Upload.State.COMPLETED):
            upload.state, upload.ended_at = Upload.State.ABORTED, timezone.now()
            upload.save(update_fields=["state", "ended_at"])
        transaction.on_commit(lambda: storage.remove_upload_files(upload_id))
    return upload


def uploads_expire_stale(*, now=None) -> int:
    """Expire this tenant's unfinished uploads idle for ``UPLOADS_EXPIRE_HOURS`` (their last
    part, or their creation); free their disk. Returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=conf.get("EXPIRE_HOURS"))
    candidates = (
        Upload.objects.filter(state=Upload.State.RECEIVING, created_at__lt=cutoff)
        .annotate(last_part=Max("parts__received_at"))
        .values_list("pk", "last_part")
    )
    stale = [pk for pk, last in candidates if last is None or last < cutoff]
    expired = 0
    for pk in stale:
        with transaction.atomic():
            upload = (
                Upload.objects.select_for_update()
                .filter(pk=pk, state=Upload.State.RECEIVING)
                .first()
            )
            if upload is None:
                continue
            if upload.parts.filter(received_at__gte=cutoff).exists():
                continue  # a part arrived meanwhile
            upload.state, upload.ended_at = Upload.State.EXPIRED, now
            upload.save(update_fields=["state", "ended_at"])
            transaction.on_commit(partial(storage.remove_upload_files, pk))
            expired += 1
    return expired


def marketplaces_check(marketplaces: Sequence[str]) -> list[str]:
    """The marketplaces an import may publish to, normalised; ``UploadInvalid`` names the
    unknown ones."""
    chosen = list(dict.fromkeys(m.strip().lower() for m in marketplaces))
    known = [m for m in steps.registered_marketplaces() if m != CATALOG]
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise UploadInvalid(
            f"unknown marketplace(s): {', '.join(unknown)} (known: {', '.join(known)})",
            details={"field": "marketplaces", "unknown": unknown, "known": known},
        )
    return chosen


def upload_start_import(
    *,
    upload_id: uuid.UUID,
    marketplaces: Sequence[str] = (),
    created_by: str = "",
    door: str = "",
) -> Upload:
    """Start the import job of a complete upload (once: asking again returns the same job).

    ``marketplaces``: where the imported products are published afterwards (a batch of
    publish jobs); empty = import only. With ``door``, the start is in the audit trail.
    """
    chosen = marketplaces_check(marketplaces)
    with transaction.atomic():
        upload = _get_locked(upload_id)
        if upload.import_job_id is not None:
            return upload
        if upload.state != Upload.State.COMPLETED:
            raise UploadConflict(
                f"upload {upload_id} is {upload.state}: only a complete upload can be imported",
                details={"state": upload.state},
            )
        job = job_create(
            marketplace=CATALOG,
            action="import",
            sku="",
            params={"upload_id": str(upload.pk), "marketplaces": chosen, "created_by": created_by},
            max_retries=1,
        )
        upload.import_job = job
        upload.save(update_fields=["import_job"])
        if door:
            record(created_by or door, door, "import.start", [("upload", upload.pk), ("job", job.pk)],
                   details={"filename": upload.filename, "marketplaces": chosen})  # fmt: skip
    return upload
