"""Reading bulk operations (the dashboard's panel)."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from operations.models import Operation


def current_operations(limit: int = 10) -> list[Operation]:
    """Operations in progress, then those finished in the last ten minutes."""
    recent = timezone.now() - timedelta(minutes=10)
    return list(
        Operation.objects.filter(
            Q(status__in=["pending", "running"]) | Q(finished_at__gte=recent)
        ).order_by("finished_at", "-created_at")[:limit]
    )
