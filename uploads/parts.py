"""Receiving one part of an upload: checked against the plan (index, length, SHA-256),
streamed to its place in the data file, recorded once.

Locks: a part holds its upload's row ``FOR SHARE`` (parts of one upload go in parallel)
and a transaction advisory lock on (upload, part) while it writes; ``upload_complete``,
``upload_abort`` and ``uploads_expire_stale`` (``uploads.services``) take the row
``FOR UPDATE``, so they wait for parts in flight and a part arriving after them finds the
upload no longer receiving.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import BinaryIO

from django.db import connection, transaction

from uploads import storage
from uploads.errors import (
    LengthRequired,
    PartChecksumError,
    UploadConflict,
    UploadInvalid,
    UploadNotFound,
)
from uploads.models import Upload, UploadPart

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class PartResult:
    upload: Upload
    index: int
    created: bool  # False: the same bytes were already stored


def check_sha256(value: str, *, what: str) -> str:
    """``value`` as 64 lower-case hex characters, or ``UploadInvalid`` naming ``what``."""
    value = (value or "").strip().lower()
    if not _HEX64.fullmatch(value):
        raise UploadInvalid(f"{what} must be 64 hex characters (SHA-256)", details={"field": what})
    return value


def _lock_for_share(upload_id: uuid.UUID) -> Upload:
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT 1 FROM "{Upload._meta.db_table}" WHERE id = %s FOR SHARE', [upload_id]
        )
        if cursor.fetchone() is None:
            raise UploadNotFound(f"upload {upload_id} not found")
    return Upload.objects.get(pk=upload_id)


def upload_put_part(
    *, upload_id: uuid.UUID, index: int, stream: BinaryIO, length: int | None, sha256: str
) -> PartResult:
    """Store part ``index`` (1-based) from ``stream`` if its bytes hash to ``sha256``.

    The same bytes again: nothing written, ``created=False``. Other bytes for a stored
    part: ``UploadConflict``. Bytes that do not hash to ``sha256``: ``PartChecksumError``
    and nothing is kept. The body is streamed to disk in 1 MiB chunks.
    """
    sha256 = check_sha256(sha256, what="X-Part-SHA256")
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
