"""``{% audit_entries "job" job.pk %}``: the latest audit entries naming one object."""

from __future__ import annotations

from typing import Any

from django import template

from audit.selectors import entries_for

register = template.Library()


@register.inclusion_tag("audit/_entries.html")
def audit_entries(kind: str, object_id: Any, limit: int = 20) -> dict[str, Any]:
    return {
        "entries": list(entries_for(kind, object_id, limit=limit)),
        "kind": kind,
        "object_id": object_id,
    }
