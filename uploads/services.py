"""Uploads: create, receive a part, complete (assemble + verify), abort, expire, import.

The only writers of ``Upload`` / ``UploadPart`` rows and of the files under
``storage.upload_dir``. Doors (API, admin, command, tasks) call these and nothing else.

Locks: a part holds its upload's row ``FOR SHARE`` (parts of one upload go in parallel)
and a transaction advisory lock on (upload, part) while it writes; ``complete``, ``abort``
and ``expire`` take the row ``FOR UPDATE``, so they wait for parts in flight and a part
arriving after them finds the upload no longer receiving.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import BinaryIO

from django.db import connection, transaction
from django.db.models import Max, Sum
from django.utils import timezone

from audit.services import record
from orchestration import steps
from orchestration.services import job_create
from orchestration.states import JOB_TERMINAL
from tenants.db import current_schema
from uploads import conf, storage
from uploads.models import Upload, UploadPart

logger = logging.getLogger(__name__)

_HEX64 = re.compile(r"[0-9a-f]{64}")
CATALOG = "catalog"  # the import's "marketplace" (its step provider, see uploads.importing)


class UploadError(Exception):
    """A request the upload's state or the input does not allow. ``code`` and ``status``
    are what the API answers; the message says why in words."""

    status = 422
    code = "invalid"

    def __init__(self, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details


class UploadInvalid(UploadError):
    status, code = 422, "validation_error"


class UploadNotFound(UploadError):
    status, code = 404, "not_found"


class UploadConflict(UploadError):
    status, code = 409, "conflict"


class UploadTooLarge(UploadError):
    status, code = 413, "too_large"


class PartChecksumError(UploadError):
    status, code = 400, "checksum_mismatch"


class UploadChecksumError(UploadError):
    status, code = 422, "checksum_mismatch"


class LengthRequired(UploadError):
    status, code = 411, "length_required"


@dataclass(frozen=True)
class PartResult:
    upload: Upload
    index: int
    created: bool  # False: the same bytes were already stored


def _sha256(value: str, *, what: str) -> str:
    value = (value or "").strip().lower()
    if not _HEX64.fullmatch(value):
        raise UploadInvalid(f"{what} must be 64 hex characters (SHA-256)", details={"field": what})
    return value


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
    sha256 = _sha256(sha256, what="sha256")
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


def _lock_for_share(upload_id: uuid.UUID) -> Upload:
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT 1 FROM "{Upload._meta.db_table}" WHERE id = %s FOR SHARE', [upload_id]
        )
        if cursor.fetchone() is None:
            raise UploadNotFound(f"upload {upload_id} not found")
    return Upload.objects.get(pk=upload_id)


def _get_locked(upload_id: uuid.UUID) -> Upload:
    upload = Upload.objects.select_for_update().filter(pk=upload_id).first()
    if upload is None:
        raise UploadNotFound(f"upload {upload_id} not found")
    return upload


def upload_put_part(
    *, upload_id: uuid.UUID, index: int, stream: BinaryIO, length: int | None, sha256: str
) -> PartResult:
    """Store part ``index`` (1-based) from ``stream`` if its bytes hash to ``sha256``.

    The same bytes again: nothing written, ``created=False``. Other bytes for a stored
    part: ``UploadConflict``. Bytes that do not hash to ``sha256``: ``PartChecksumError``
    and nothing is kept. The body is streamed to disk in 1 MiB chunks.
    """
    sha256 = _sha256(sha256, what="X-Part-SHA256")
    with transaction.atomic():
        upload = _lock_for_share(upload_id)
        if upload.state != Upload.State.RECEIVING:
            raise UploadConflict(
                f"upload {upload_id} is {upload.state}: it takes no more parts",
                details={"state": upload.state},
            )
        if not 1 <= index <= upload.part_count:
            raise UploadInvalid(
                f"part {index} is out of range: this upload has parts 1 to {upload.part_count}",
                details={"field": "n", "parts": upload.part_count},
            )
        expected = upload.part_length(index)
        if length is None:
            raise LengthRequired(
                "a part needs a Content-Length header", details={"expected": expected}
            )
        if length != expected:
            raise UploadInvalid(
                f"part {index} must be {expected} bytes, the body has {length}",
                details={"field": "Content-Length", "expected": expected, "got": length},
            )
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                           [f"upload-part:{upload_id}:{index}"])  # fmt: skip
        stored = UploadPart.objects.filter(upload_id=upload_id, index=index).first()
        if stored is not None:
            actual = _hash_body(stream, length)
            if actual != sha256:
                raise PartChecksumError(
                    f"part {index}'s bytes hash to {actual}, not to X-Part-SHA256 {sha256}",
                    details={"expected": sha256, "actual": actual},
                )
            if actual == stored.sha256:
                return PartResult(upload, index, created=False)
            raise UploadConflict(
                f"part {index} is already stored with other bytes (sha256 {stored.sha256})",
                details={"stored_sha256": stored.sha256},
            )
        try:
            storage.write_part(
                storage.upload_dir(upload_id) / storage.DATA,
                offset=(index - 1) * upload.part_size,
                stream=stream,
                length=length,
                sha256=sha256,
            )
        except storage.PartChecksumMismatch as exc:
            raise PartChecksumError(
                f"part {index}'s bytes hash to {exc.actual}, not to X-Part-SHA256 {sha256}; "
                "the part was not kept",
                details={"expected": sha256, "actual": exc.actual},
            ) from None
        except storage.ShortBody as exc:
            raise UploadInvalid(f"part {index}: {exc}") from None
        UploadPart.objects.create(upload_id=upload_id, index=index, size=length, sha256=sha256)
    return PartResult(upload, index, created=True)


def _hash_body(stream: BinaryIO, length: int) -> str:
    try:
        return storage.hash_stream(stream, length)
    except storage.ShortBody as exc:
        raise UploadInvalid(str(exc)) from None


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
