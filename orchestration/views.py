"""The staff dashboard (per tenant) and the platform roll-up (public schema). Thin: they read
through ``orchestration.selectors`` and act through ``orchestration.services``."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_POST
from django_q.brokers import get_broker
from django_tenants.utils import get_public_schema_name

from audit.services import record
from config.admin_sites import tenant_admin_site
from operations.selectors import current_operations
from orchestration import selectors, services
from orchestration.engine import marks
from orchestration.models import MarketplaceJob
from scheduler.selectors import upcoming_schedules
from tenants.db import current_schema
from tenants.models import Domain, DrainSlot, Tenant, TenantQueue

DASHBOARD_PERMS = ("orchestration.view_batch", "orchestration.view_marketplacejob")
CHART_HEIGHT = 60


def _require(request: HttpRequest, *perms: str) -> None:
    if not request.user.has_perms(perms):
        raise PermissionDenied


def _bars(values: list[int], *, width: int = 6, gap: int = 1) -> dict[str, Any]:
    top = max([1, *values])
    return {
        "bars": [
            {
                "x": i * (width + gap),
                "y": CHART_HEIGHT - round(CHART_HEIGHT * v / top),
                "h": round(CHART_HEIGHT * v / top),
                "value": v,
            }
            for i, v in enumerate(values)
        ],
        "width": len(values) * (width + gap),
        "bar_width": width,
        "height": CHART_HEIGHT,
        "top": top,
    }


def _panel(request: HttpRequest, panel: str) -> dict[str, Any]:
    """What one dashboard panel shows (each panel is also re-fetched on its own)."""
    if panel == "batches":
        batches = selectors.live_batches()
        activity = selectors.batch_activity(b.pk for b in batches)
        return {"batches": [{"batch": b, "state": selectors.batch_state(b),
                             "activity": activity.get(b.pk, {})} for b in batches]}  # fmt: skip
    if panel == "retrying":
        return {"retrying": selectors.retrying_jobs()}
    if panel == "queues":
        reserved = selectors.reservations()
        queues = selectors.queue_depth()
        for queue in queues:
            queue["reserved"] = reserved.get(queue["key"], [])
        return {"queues": queues, "tenant_paused": marks.tenant_paused(current_schema())}
    if panel == "throughput":
        rate = selectors.throughput()
        minutes = rate["minutes"]
        recent = rate["steps"][-5:]
        axis = [  # a time axis under the charts: every 15 minutes, in the server's zone
            {"x": i * 7, "label": timezone.localtime(m).strftime("%H:%M")}
            for i, m in enumerate(minutes)
            if i % 15 == 0 or i == len(minutes) - 1
        ]
        return {
            "rate": rate,
            "recent_rate": round(sum(recent) / max(1, len(recent)), 1),
            "recent_failed": sum(rate["failed_runs"][-5:]),
            "axis": axis,
            "steps_chart": _bars(rate["steps"]),
            "failures_chart": _bars(rate["failed_runs"]),
        }
    if panel == "failures":
        groups = selectors.failure_groups()
        for group in groups:
            # The job list filtered to this error; its "Retry all matching…" takes the filter.
            filters = urlencode({"status__exact": "failed", "q": group["error_message"][:80]})
            group["list_url"] = (
                f"{reverse('tenant_admin:orchestration_marketplacejob_changelist')}?{filters}"
            )
            group["retry_url"] = (
                f"{reverse('tenant_admin:orchestration_job_bulk', args=['retry'])}?"
                f"{urlencode({'_changelist_filters': filters})}"
            )
        return {
            "groups": groups,
            "failures": selectors.recent_failures(),
            "can_act": request.user.has_perm("orchestration.change_marketplacejob"),
        }
    if panel == "workers":
        return {"health": selectors.worker_health(), "clusters": _clusters()}
    if panel == "schedules":
        return {"schedules": upcoming_schedules()}
    if panel == "operations":
        return {"operations": current_operations()}
    raise Http404


# Verdicts of ``selectors.cluster_health()`` shown red: the cluster does not work.
BAD_VERDICTS = ("stalled", "restarting", "down")
_VERDICT_ORDER = {"stalled": 0, "restarting": 1, "down": 2, "ok": 3}


def _ago(seconds: float | None) -> str:
    """A short, readable age: "4 s", "2 min 5 s", "1 h 3 min"."""
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _clusters() -> dict[str, Any]:
    """The worker clusters (``selectors.cluster_health()``) as the workers panel and
    ``/platform/`` show them: the ones that do not work first, each with its ages spelled out."""
    health = selectors.cluster_health()
    rows = []
    for cluster in health["clusters"]:
        rows.append({
            **cluster, "bad": cluster["verdict"] in BAD_VERDICTS,
            "progress_ago": _ago(cluster["progress_seconds"]),
            "heartbeat_ago": _ago(cluster["heartbeat_seconds"]),
        })  # fmt: skip
    rows.sort(key=lambda r: (_VERDICT_ORDER.get(r["verdict"], 9), r["name"]))
    alive = [r for r in rows if r["alive"]]
    bad = [r for r in rows if r["bad"]]
    return {
        "ok": health["ok"],
        "rows": rows,
        "alive": len(alive),
        "bad": len(bad),
        "problems": health["problems"],
    }


PANELS = ("batches", "queues", "retrying", "throughput", "failures", "workers", "schedules",
          "operations")  # fmt: skip


def _dashboard(request: HttpRequest) -> HttpResponse:
    _require(request, *DASHBOARD_PERMS)
    context: dict[str, Any] = {**tenant_admin_site.each_context(request), "title": "Live dashboard"}
    for panel in PANELS:
        if panel == "retrying":  # counted with the queues already
            total = sum(q["retrying"] for q in context["queues"])
            context["retrying"] = selectors.retrying_jobs(total=total)
            continue
        context.update(_panel(request, panel))
    return TemplateResponse(request, "orchestration/dashboard.html", context)


def _dashboard_panel(request: HttpRequest, panel: str) -> HttpResponse:
    """One panel's HTML, re-fetched by the page (on failures, and every few seconds)."""
    _require(request, *DASHBOARD_PERMS)
    return TemplateResponse(
        request, f"orchestration/dashboard/_{panel}.html", _panel(request, panel)
    )


def _dashboard_retry(request: HttpRequest, job_id: int) -> HttpResponse:
    """One-click retry of a failed job (POST; answers JSON to the page's script)."""
    _require(request, "orchestration.change_marketplacejob")
    try:
        job = services.job_retry(job_id=job_id)
        record(request.user.get_username(), "dashboard", "job.retry", [("job", job.pk)])
        answer = {"ok": True, "job_id": job.pk, "status": job.status,
                  "message": f"Job {job.pk} queued again."}  # fmt: skip
    except services.JobError as exc:
        answer = {"ok": False, "job_id": job_id, "message": str(exc)}
    except MarketplaceJob.DoesNotExist:
        raise Http404(f"no job {job_id} in this workspace") from None
    if request.headers.get("x-requested-with") == "fetch":
        return JsonResponse(answer, status=200 if answer["ok"] else 409)
    return HttpResponseRedirect(reverse("dashboard"))


# Staff of this tenant only (login page of the tenant's admin otherwise), CSRF-protected.
dashboard = tenant_admin_site.admin_view(_dashboard)
dashboard_panel = tenant_admin_site.admin_view(_dashboard_panel)
dashboard_retry = tenant_admin_site.admin_view(require_POST(_dashboard_retry))


def _platform(request: HttpRequest) -> HttpResponse:
    """Every tenant's queue depth, running and failed jobs, for the platform's superusers."""
    if current_schema() != get_public_schema_name():
        raise Http404  # only ever routed on the public URLconf; belt and braces
    if not request.user.is_superuser:
        raise PermissionDenied
    if request.GET.get("panel") == "clusters":  # re-fetched by the page every few seconds
        return TemplateResponse(request, "orchestration/_clusters.html", {"clusters": _clusters()})
    now = timezone.now()
    tenants = Tenant.objects.exclude(schema_name=get_public_schema_name()).order_by("schema_name")
    page = Paginator(tenants, 50).get_page(request.GET.get("page"))
    schemas = [t.schema_name for t in page]
    queues = {q.schema_name: q for q in TenantQueue.objects.filter(schema_name__in=schemas)}
    counts = selectors.tenant_rollup(schemas)
    port = request.get_port()
    suffix = "" if port in ("80", "443") else f":{port}"
    dashboards = {
        tenant_id: f"{request.scheme}://{domain}{suffix}{reverse('dashboard', urlconf='config.urls_tenant')}"
        for tenant_id, domain in Domain.objects.filter(
            tenant__in=list(page), is_primary=True
        ).values_list("tenant_id", "domain")
    }
    rows = []
    for t in page:
        queue = queues.get(t.schema_name)
        ready_at = queue.ready_at if queue else None
        rows.append({
            "tenant": t, "queue": queue, "counts": counts.get(t.schema_name),
            "dashboard_url": dashboards.get(t.pk, ""),
            "ready_ago": _ago((now - ready_at).total_seconds()) if ready_at else "",
        })  # fmt: skip
    context = {
        **admin.site.each_context(request),
        "title": "All tenants",
        "page": page,
        "rows": rows,
        "totals": {
            key: sum((c or {}).get(key, 0) for c in counts.values())
            for key in ("waiting", "running", "failed_24h")
        },
        "ready_tenants": TenantQueue.objects.filter(ready_at__isnull=False, paused=False).count(),
        "clusters": _clusters(),
        "drains": list(DrainSlot.objects.order_by("pk")),
        "broker_queue": _broker_queue_size(),
    }
    return TemplateResponse(request, "orchestration/platform.html", context)


def _broker_queue_size() -> int | None:
    try:
        return int(get_broker().queue_size() or 0)
    except Exception:
        return None


platform = admin.site.admin_view(_platform)
