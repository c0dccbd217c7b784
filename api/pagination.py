"""Cursor pagination (newest first, by id): stable under inserts, no OFFSET scans.

The cursor is opaque to clients (base64 of the last id seen); ``next_cursor`` is null on the
last page.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.db.models import QuerySet

from api.errors import ApiError

MAX_LIMIT = 200


def _decode(cursor: str) -> int:
    try:
        value = int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ApiError(
            422,
            "validation_error",
            "invalid cursor",
            details=[{"field": "cursor", "in": "query", "message": "use next_cursor as given"}],
        ) from None
    if value < 0:
        raise ApiError(422, "validation_error", "invalid cursor")
    return value


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def paginate(queryset: QuerySet, *, cursor: str | None, limit: int) -> tuple[list[Any], str | None]:
    """One page of ``queryset`` (ordered here by -id) and the next page's cursor."""
    queryset = queryset.order_by("-id")
    if cursor:
        queryset = queryset.filter(id__lt=_decode(cursor))
    rows = list(queryset[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].id) if more and rows else None)
