"""Reads of planning data and plan jobs (current tenant's schema)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

from django.db.models import Count, Max, Min, Sum

from orchestration.models import MarketplaceJob, MarketplaceTask
from orchestration.states import JobStatus
from planning.models import PlanPush, Store, WeeklySales

MARKETPLACE = "planning"  # the plan jobs' provider (orchestration.steps)
ACTION = "plan"
LOOKBACK_WEEKS = 156  # history older than three years is ignored


def categories() -> list[str]:
    """Categories that have history, alphabetical."""
    return list(
        WeeklySales.objects.order_by("category").values_list("category", flat=True).distinct()
    )


def history_summary() -> dict[str, Any]:
    agg = WeeklySales.objects.aggregate(rows=Count("id"), first=Min("week"), last=Max("week"))
    return {**agg, "stores": Store.objects.count(), "categories": categories()}


def category_history(
    category: str, *, before: date, lookback_weeks: int = LOOKBACK_WEEKS
) -> dict[str, Any]:
    """Weekly units of a category's SKUs per store cluster, before ``before``.

    ``{"weeks": [monday, ...], "clusters": {cluster: [store codes]},
    "series": {sku: {cluster: [units per week]}}}``; weeks with no row count 0. Empty
    ``weeks`` when the category has no history.
    """
    since = before - timedelta(weeks=lookback_weeks)
    rows = list(
        WeeklySales.objects.filter(category=category, week__gte=since, week__lt=before)
        .values_list("sku", "store__cluster", "week")
        .annotate(units=Sum("units"))
        .order_by()
    )
    if not rows:
        return {"weeks": [], "clusters": {}, "series": {}}
    first = min(r[2] for r in rows)
    last = max(r[2] for r in rows)
    first -= timedelta(days=first.weekday())
    count = (last - first).days // 7 + 1
    weeks = [first + timedelta(weeks=i) for i in range(count)]
    series: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for sku, cluster, week, units in rows:
        line = series[sku].setdefault(cluster, [0] * count)
        line[(week - first).days // 7] += int(units)
    clusters: dict[str, list[str]] = defaultdict(list)
    for code, cluster in Store.objects.order_by("code").values_list("code", "cluster"):
        clusters[cluster].append(code)
    used = {c for by_cluster in series.values() for c in by_cluster}
    return {
        "weeks": [w.isoformat() for w in weeks],
        "clusters": {c: codes for c, codes in sorted(clusters.items()) if c in used},
        "series": {sku: dict(sorted(v.items())) for sku, v in sorted(series.items())},
    }


def listed_products(skus: Iterable[str], marketplaces: Sequence[str]) -> dict[tuple[str, str], int]:
    """(sku, marketplace) → product id, for the listings that exist: the product's latest
    completed publish/unpublish job on that marketplace was a publish."""
    latest: dict[tuple[str, str], tuple[Any, str, int]] = {}
    rows = (
        MarketplaceJob.objects.filter(
            product__sku__in=list(skus),
            marketplace__in=list(marketplaces),
            action__in=[MarketplaceJob.Action.PUBLISH, MarketplaceJob.Action.UNPUBLISH],
            status=JobStatus.COMPLETED,
        )
        .values_list("product__sku", "marketplace", "completed_at", "action", "product_id")
        .order_by("completed_at", "pk")
    )
    for sku, marketplace, completed_at, action, product_id in rows:
        latest[(sku, marketplace)] = (completed_at, action, product_id)
    return {
        key: product_id
        for key, (_at, action, product_id) in latest.items()
        if action == MarketplaceJob.Action.PUBLISH
    }


def plan_jobs() -> Any:
    return MarketplaceJob.objects.filter(marketplace=MARKETPLACE, action=ACTION)


def plan_detail(job: MarketplaceJob) -> dict[str, Any]:
    """A plan job's status, parameters and each step's output (what the API and admin show)."""
    tasks = list(MarketplaceTask.objects.filter(job_id=job.pk).order_by("step_order"))
    push = PlanPush.objects.filter(plan_job_id=job.pk).first()
    return {
        "id": job.pk,
        "status": job.status,
        "error": job.error_message,
        "params": job.params,
        "retry_count": job.retry_count,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
        "push_batch_id": push.batch_id if push else None,
        "steps": [
            {
                "order": t.step_order,
                "step": t.step_type,
                "status": t.status,
                "error": t.error_message,
                "output": t.output,
                "started_at": t.started_at,
                "completed_at": t.completed_at,
            }
            for t in tasks
        ],
    }
