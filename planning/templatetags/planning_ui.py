"""``{% plan_outputs job %}``: a plan job's step outputs on the job page (forecast curve as
an inline SVG drawn here, quantities table, push); no script."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import template

from orchestration.models import MarketplaceJob, MarketplaceTask
from planning.models import PlanPush

register = template.Library()

WIDTH, HEIGHT, PAD = 560, 160, 28


def _points(values: Sequence[float], top: float) -> str:
    if not values:
        return ""
    step = (WIDTH - 2 * PAD) / max(1, len(values) - 1)
    scale = (HEIGHT - 2 * PAD) / top if top > 0 else 0
    return " ".join(
        f"{PAD + i * step:.1f},{HEIGHT - PAD - v * scale:.1f}" for i, v in enumerate(values)
    )


def forecast_chart(demand: dict[str, Any]) -> dict[str, Any]:
    """Polylines (category total and one per cluster) and axis labels for the SVG."""
    total = demand.get("total") or []
    clusters = demand.get("clusters") or {}
    top = max([*total, *(v for c in clusters.values() for v in c), 1.0])
    weeks = demand.get("weeks") or []
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "pad": PAD,
        "bottom": HEIGHT - PAD,
        "right": WIDTH - PAD,
        "total": _points(total, top),
        "clusters": [
            {"name": name, "points": _points(curve, top), "index": i % 6}
            for i, (name, curve) in enumerate(sorted(clusters.items()))
        ],
        "top": round(top),
        "first_week": weeks[0] if weeks else "",
        "last_week": weeks[-1] if weeks else "",
        "weeks": len(weeks),
        "units": round(sum(total)),
    }


@register.inclusion_tag("planning/_plan_outputs.html")
def plan_outputs(job: MarketplaceJob) -> dict[str, Any]:
    outputs = {
        t.step_type: t.output
        for t in MarketplaceTask.objects.filter(job_id=job.pk).only("step_type", "output")
        if t.output
    }
    demand = outputs.get("forecast_demand")
    inventory = outputs.get("compute_inventory")
    quantities = sorted((inventory or {}).get("quantities", {}).items())
    push = PlanPush.objects.filter(plan_job_id=job.pk).first()
    return {
        "job": job,
        "params": job.params,
        "chart": forecast_chart(demand) if demand else None,
        "methods": (demand or {}).get("methods", {}),
        "inventory": inventory,
        "quantities": quantities,
        "push": push,
    }
