"""A job filter every door can send: the same choices as the job list's filters, as data.

``{"status": ["failed"], "marketplace": "ebay", "action": "publish", "batch": 7,
"q": "timeout", "created_after": "2026-01-01T00:00:00+00:00", "created_before": …,
"ids": [1, 2]}`` — every key optional. ``from_changelist_query`` reads the job list's own
query string (what the admin's and the dashboard's "… all matching" buttons carry).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.http import QueryDict
from django.utils.dateparse import parse_datetime

from orchestration import steps
from orchestration.models import MarketplaceJob
from orchestration.states import JobStatus

KEYS = ("status", "marketplace", "action", "batch", "q", "created_after", "created_before", "ids")
MAX_IDS = 10_000
_SKU_TERM = re.compile(r"[\w.-]{2,64}")  # the job list's rule: looks like a SKU

# The job list's query parameters → filter keys (anything else is refused, not ignored).
_CHANGELIST = {
    "status__exact": "status",
    "status": "status",
    "marketplace": "marketplace",
    "action__exact": "action",
    "batch": "batch",
    "q": "q",
    "created_at__gte": "created_after",
    "created_at__lt": "created_before",
    "id__in": "ids",
}
_CHANGELIST_IGNORED = {"o", "p", "_changelist_filters", "e"}


class FilterError(ValueError):
    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


def _when(value: Any, field: str) -> datetime:
    parsed = parse_datetime(str(value)) if value else None
    if parsed is None:
        from django.utils.dateparse import parse_date

        day = parse_date(str(value)) if value else None
        if day is None:
            raise FilterError(f"{field}: expected an ISO date or date-time, got {value!r}", field)
        parsed = datetime(day.year, day.month, day.day)
    if parsed.tzinfo is None:
        from django.utils import timezone

        parsed = timezone.make_aware(parsed)
    return parsed


def clean(raw: dict[str, Any]) -> dict[str, Any]:
    """A validated, normalised copy of a filter (``FilterError`` names the bad key)."""
    if not isinstance(raw, dict):
        raise FilterError("the filter must be an object")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise FilterError(f"unknown filter key(s): {', '.join(unknown)}", unknown[0])
    out: dict[str, Any] = {}
    statuses = raw.get("status")
    if statuses is not None and statuses != "":  # an empty list matches nothing
        statuses = [statuses] if isinstance(statuses, str) else list(statuses)
        bad = [s for s in statuses if s not in JobStatus.__members__.values()]
        if bad:
            raise FilterError(f"unknown status(es): {', '.join(map(str, bad))}", "status")
        out["status"] = sorted(set(statuses))
    if raw.get("marketplace"):
        if raw["marketplace"] not in steps.registered_marketplaces():
            raise FilterError(f"unknown marketplace {raw['marketplace']!r}", "marketplace")
        out["marketplace"] = str(raw["marketplace"])
    if raw.get("action"):
        if raw["action"] not in MarketplaceJob.Action.values:
            raise FilterError(f"unknown action {raw['action']!r}", "action")
        out["action"] = str(raw["action"])
    if raw.get("batch") not in (None, ""):
        try:
            out["batch"] = int(raw["batch"])
        except (TypeError, ValueError) as exc:
            raise FilterError(f"batch: expected an id, got {raw['batch']!r}", "batch") from exc
    if raw.get("q"):
        out["q"] = str(raw["q"]).strip()[:200]
    for key in ("created_after", "created_before"):
        if raw.get(key):
            out[key] = _when(raw[key], key).isoformat()
    if raw.get("ids"):
        ids = raw["ids"]
        if isinstance(ids, str):
            ids = [part for part in ids.split(",") if part.strip()]
        try:
            out["ids"] = sorted({int(i) for i in ids})
        except (TypeError, ValueError) as exc:
            raise FilterError("ids: expected a list of job ids", "ids") from exc
        if len(out["ids"]) > MAX_IDS:
            raise FilterError(f"ids: at most {MAX_IDS:,} (use a filter for more)", "ids")
    return out


def from_changelist_query(query: str) -> dict[str, Any]:
    """The job list's query string (``status__exact=failed&q=…``) as a filter."""
    raw: dict[str, Any] = {}
    for key, values in QueryDict(query).lists():
        if key in _CHANGELIST_IGNORED:
            continue
        if key not in _CHANGELIST:
            raise FilterError(f"this list filter cannot be used for a bulk operation: {key}", key)
        target = _CHANGELIST[key]
        raw[target] = values if target == "status" else values[-1]
    return clean(raw)


def jobs_matching(job_filter: dict[str, Any]) -> QuerySet[MarketplaceJob]:
    """The jobs a (clean) filter matches; the search follows the job list's rule (a term
    shaped like a SKU that prefixes some SKU: those jobs; else SKU or error text)."""
    jobs = MarketplaceJob.objects.all()
    if "status" in job_filter:
        jobs = jobs.filter(status__in=job_filter["status"])
    if "marketplace" in job_filter:
        jobs = jobs.filter(marketplace=job_filter["marketplace"])
    if "action" in job_filter:
        jobs = jobs.filter(action=job_filter["action"])
    if "batch" in job_filter:
        jobs = jobs.filter(batch_id=job_filter["batch"])
    if "created_after" in job_filter:
        jobs = jobs.filter(created_at__gte=job_filter["created_after"])
    if "created_before" in job_filter:
        jobs = jobs.filter(created_at__lt=job_filter["created_before"])
    if "ids" in job_filter:
        jobs = jobs.filter(pk__in=job_filter["ids"])
    term = job_filter.get("q", "")
    if term:
        by_sku = jobs.filter(sku__istartswith=term) if _SKU_TERM.fullmatch(term) else None
        if by_sku is not None and by_sku.exists():
            jobs = by_sku
        else:
            words = term.split()
            for word in words:
                jobs = jobs.filter(Q(sku__icontains=word) | Q(error_message__icontains=word))
    return jobs


def describe(job_filter: dict[str, Any]) -> str:
    if not job_filter:
        return "every job"
    return ", ".join(f"{k}={v}" for k, v in job_filter.items())
