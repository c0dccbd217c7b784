"""Upload files on disk: ``<UPLOADS_ROOT>/<schema>/<upload uuid>/``.

Paths are built from the current tenant's schema name and the upload's UUID (a database
key), never from anything a client sent: a request can only name its own tenant's
directory, and a filename is a label (``sanitize_filename``), not a path.

Files in an upload's directory: ``data`` (the file; parts are written at their offsets),
and, after an import's validation step, ``valid.jsonl`` (normalised valid rows),
``rejected.csv`` (line, SKU, reasons) and ``summary.json``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import unicodedata
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from tenants.db import current_schema
from uploads import conf

CHUNK = 1024 * 1024  # bytes per read/write: memory stays flat whatever the file size
DATA = "data"
VALID_ROWS = "valid.jsonl"
REJECTED = "rejected.csv"
SUMMARY = "summary.json"

_UNSAFE = re.compile(r"[^\w.\- ()+,]")


class PartChecksumMismatch(Exception):
    def __init__(self, actual: str):
        super().__init__(actual)
        self.actual = actual


class ShortBody(Exception):
    """The request body ended before the declared length."""


def sanitize_filename(name: str) -> str:
    """A display label from a client's filename: its last path component, NFC, printable,
    at most 200 characters; ``upload`` when nothing is left."""
    name = unicodedata.normalize("NFC", str(name or ""))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable())
    name = _UNSAFE.sub("_", name).strip(" .")
    return name[:200] or "upload"


def tenant_dir(schema_name: str | None = None) -> Path:
    schema = schema_name or current_schema()
    if not re.fullmatch(r"[a-z0-9_]{1,63}", schema):  # django-tenants' own rule, re-checked
        raise ValueError(f"unexpected schema name {schema!r}")
    return conf.root() / schema


def upload_dir(upload_id: uuid.UUID | str, schema_name: str | None = None) -> Path:
    return tenant_dir(schema_name) / str(uuid.UUID(str(upload_id)))


def create_data_file(upload_id: uuid.UUID, size: int) -> Path:
    """An empty (sparse) file of ``size`` bytes: parts land at their offsets in any order."""
    directory = upload_dir(upload_id)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / DATA
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def remove_upload_files(upload_id: uuid.UUID | str, schema_name: str | None = None) -> None:
    shutil.rmtree(upload_dir(upload_id, schema_name), ignore_errors=True)


def hash_stream(stream: BinaryIO, length: int) -> str:
    """SHA-256 of the next ``length`` bytes of ``stream`` (read in chunks, nothing kept)."""
    digest = hashlib.sha256()
    _pump(stream, length, digest.update)
    return digest.hexdigest()


def write_part(path: Path, *, offset: int, stream: BinaryIO, length: int, sha256: str) -> None:
    """Copy ``length`` bytes of ``stream`` into ``path`` at ``offset``, hashing as they go.

    A checksum mismatch zeroes the region again and raises ``PartChecksumMismatch``: the
    bytes are not kept. The part is flushed to disk (fdatasync) before it is recorded.
    """
    digest = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY)
    try:
        position = offset

        def write(chunk: bytes) -> None:
            nonlocal position
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                written = os.pwrite(fd, view, position)
                position += written
                view = view[written:]

        try:
            _pump(stream, length, write)
        except ShortBody:
            _zero(fd, offset, position - offset)
            raise
        if digest.hexdigest() != sha256:
            _zero(fd, offset, length)
            raise PartChecksumMismatch(digest.hexdigest())
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _zero(fd: int, offset: int, length: int) -> None:
    zeros = bytes(min(CHUNK, max(length, 0)))
    end = offset + length
    while offset < end:
        offset += os.pwrite(fd, zeros[: end - offset], offset)


def _pump(stream: BinaryIO, length: int, sink: Callable[[bytes], object]) -> None:
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(CHUNK, remaining))
        if not chunk:
            raise ShortBody(f"body ended {remaining} bytes early")
        remaining -= len(chunk)
        sink(chunk)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        while True:
            n = handle.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
    return digest.hexdigest()


def sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def directory_bytes(path: Path) -> int:
    """Disk blocks used under ``path`` (sparse files count what is written)."""
    total = 0
    for entry in path.rglob("*"):
        if entry.is_file():
            total += entry.stat().st_blocks * 512
    return total
