"""Reading the audit trail."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from audit.models import AuditEntry


def entries_for(kind: str, object_id: Any, *, limit: int = 50) -> QuerySet[AuditEntry]:
    """The latest entries that name one object (a job's or batch's page)."""
    return AuditEntry.objects.filter(targets__contains=[[kind, str(object_id)]]).order_by(
        "-created_at", "-id"
    )[:limit]
