"""The job list and the job page: columns that fit, a search that uses the SKU index,
the list's actions, and the live timeline of steps and runs above the form."""

from __future__ import annotations

import re
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from config.admin_sites import tenant_admin_site
from orchestration import selectors, services
from orchestration.admin.display import next_attempt, status_badge
from orchestration.admin.job_controls import (
    BULK_CHUNK,
    JobControlsAdmin,
    run_now_outlook,
    run_service,
    show_acted_on,
)
from orchestration.admin.shared import (
    BatchFilter,
    EngineRowAdminMixin,
    LiveAdminMixin,
    MarketplaceFilter,
    audit,
)
from orchestration.models import MarketplaceJob
from orchestration.paginators import EstimatedCountPaginator
from orchestration.states import JOB_CLAIMABLE, JOB_RETRYABLE_BY_STAFF, JOB_TERMINAL, JobStatus
from orchestration.templatetags.orchestration_ui import when

_SKU_TERM = re.compile(r"[\w.-]{2,64}")  # no spaces: looks like a SKU, not error text


@admin.register(MarketplaceJob, site=tenant_admin_site)
class MarketplaceJobAdmin(EngineRowAdminMixin, LiveAdminMixin, JobControlsAdmin):
    # What matters first (status, error, what happens next), so a narrow screen keeps it.
    # The batch in a short column of its own ("#12 · 3/5", its name on hover) before the less
    # urgent ones: at the end of a wide row it was pushed out of sight at 1,400 px.
    list_display = ("id", "sku_column", "status_badge", "error_column", "next_column",
                    "batch_column", "attempts", "duration", "updated", "what")  # fmt: skip
    list_display_links = ("id", "sku_column")
    list_filter = ("status", MarketplaceFilter, "action", BatchFilter, "created_at")
    search_fields = ("sku", "error_message")
    search_help_text = "SKU (or its beginning) or error text"
    ordering = ("-created_at", "-id")
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_select_related = ("batch",)
    readonly_fields = ("batch", "sequence", "product", "sku", "marketplace", "resource_key", "action",
                       "params", "direct", "run_after", "cancel_requested", "result",
                       "current_run", "created")  # fmt: skip
    raw_id_fields = ("batch", "product", "current_run")
    # The status, error, attempts and what happens next are in the live timeline above the
    # form (once); engine internals are folded away.
    fieldsets = (
        (None, {"fields": ("product", "batch", "priority", "max_retries", "created")}),
        ("Engine internals", {"classes": ("collapse",),
                              "fields": ("sku", "marketplace", "action", "resource_key",
                                         "sequence", "direct", "run_after",
                                         "cancel_requested", "current_run", "params", "result")}),
    )  # fmt: skip
    actions = ("retry", "cancel", "run_now")

    def has_add_permission(self, request):
        return False

    terminal_statuses = frozenset(JOB_TERMINAL)

    def save_model(self, request, obj, form, change):
        """Only the options staff may change, through the service that writes those columns
        alone (never ``obj.save()``: the loaded copy of the engine's fields may be stale)."""
        changed = set(form.changed_data)
        services.job_set_options(
            job_id=obj.pk,
            priority=obj.priority if "priority" in changed else None,
            max_retries=obj.max_retries if "max_retries" in changed else None,
        )
        if changed & {"priority", "max_retries"}:
            audit(request, "job.set_options", [("job", obj.pk)],
                   details={f: getattr(obj, f) for f in sorted(changed & {"priority", "max_retries"})})  # fmt: skip

    def delete_model(self, request, obj):
        # The job may have been retried since the page was loaded: decide under its row lock.
        with transaction.atomic():
            status = (
                MarketplaceJob.objects.select_for_update()
                .filter(pk=obj.pk)
                .values_list("status", flat=True)
                .first()
            )
            if status is not None and status not in JOB_TERMINAL:
                raise PermissionDenied(f"job {obj.pk} is {status}: cancel it first")
            super().delete_model(request, obj)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: MarketplaceJob) -> str:
        return status_badge(obj.status, job_id=obj.pk)

    @admin.display(description="Batch")
    def batch_column(self, obj: MarketplaceJob) -> str:
        """Which batch, and where the job is in it: ``#12 · 3/5``, the batch's name on hover."""
        if obj.batch is None:
            return "—"
        url = reverse("tenant_admin:orchestration_batch_change", args=[obj.batch_id])
        total = obj.batch.total_jobs
        return format_html('<a class="batch-cell" href="{}" title="{} (job {} of {})">#{} · {}/{}</a>',
                           url, obj.batch.name, obj.sequence, total, obj.batch_id, obj.sequence,
                           total)  # fmt: skip

    @admin.display(description="What", ordering="marketplace")
    def what(self, obj: MarketplaceJob) -> str:
        return format_html('<span class="nowrap">{} · {}</span>', obj.marketplace, obj.action)

    @admin.display(description="SKU", ordering="sku")
    def sku_column(self, obj: MarketplaceJob) -> str:
        return format_html('<span class="sku-cell" title="{}">{}</span>', obj.sku, obj.sku or "—")

    @admin.display(description="Retries", ordering="retry_count")
    def attempts(self, obj: MarketplaceJob) -> str:
        return format_html('<span class="nowrap">{}/{}</span>', obj.retry_count, obj.max_retries)

    @admin.display(description="Next")
    def next_column(self, obj: MarketplaceJob) -> str:
        return next_attempt(obj)

    @admin.display(description="Error")
    def error_column(self, obj: MarketplaceJob) -> str:
        if not obj.error_message:
            return ""
        return format_html('<span class="error-cell" title="{}">{}</span>', obj.error_message,
                           Truncator(obj.error_message).chars(90))  # fmt: skip

    @admin.display(description="Duration")
    def duration(self, obj: MarketplaceJob) -> str:
        if obj.started_at and obj.completed_at:
            return f"{(obj.completed_at - obj.started_at).total_seconds():.1f} s"
        return ""

    @admin.display(description="Updated", ordering="updated_at")
    def updated(self, obj: MarketplaceJob) -> str:
        return when(obj.updated_at)

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: MarketplaceJob) -> str:
        return when(obj.created_at)

    # The list's actions (selected rows, or "select all" across pages).

    @admin.action(description="Retry the selected jobs", permissions=["change"])
    def retry(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        run_service(self, request, ids, services.job_retry, "Retried", "job.retry")
        return show_acted_on(ids)

    @admin.action(description="Cancel the selected jobs", permissions=["change"])
    def cancel(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        run_service(self, request, ids, services.job_cancel, "Cancelled", "job.cancel")
        return show_acted_on(ids)

    @admin.action(description="Run the selected jobs now", permissions=["change"])
    def run_now(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True)[:BULK_CHUNK])
        if run_service(self, request, ids, services.job_run_now, "Reserved the next place for",
                        "job.run_now"):  # fmt: skip
            for key in sorted(set(queryset.values_list("resource_key", flat=True)[:BULK_CHUNK])):
                self.message_user(request, run_now_outlook(key), messages.INFO)
        return show_acted_on(ids)

    # Pages and buttons.

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("bulk/<str:verb>/", wrap(self.bulk_view), name="orchestration_job_bulk"),
            path(
                "<int:object_id>/control/<str:verb>/",
                wrap(self.control_view),
                name="orchestration_job_control",
            ),
            path(
                "<int:object_id>/timeline/",
                wrap(self.timeline_view),
                name="orchestration_job_timeline",
            ),
            *super().get_urls(),
        ]

    def get_search_results(self, request, queryset, search_term):
        """A term shaped like a SKU that prefixes some SKU returns those jobs, from an index
        (``job_sku_prefix_idx``); anything else searches SKU and error text by substring
        (trigram indexes where pg_trgm exists, else a scan)."""
        term = search_term.strip()
        if _SKU_TERM.fullmatch(term):
            by_sku = queryset.filter(sku__istartswith=term)
            if by_sku.exists():
                return by_sku, False
        return super().get_search_results(request, queryset, search_term)

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(
            request, {**self.live_context(request), **(extra_context or {})}
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        context = self.live_context(request, **(extra_context or {}))
        job = (
            MarketplaceJob.objects.filter(pk=object_id).first()
            if str(object_id).isdigit()
            else None
        )
        if job is not None:
            context.update(self._timeline_context(request, job))
            context.update(title=f"Job #{job.pk} · {job.marketplace} {job.action} {job.sku}",
                           subtitle=None)  # fmt: skip
        return super().change_view(request, object_id, form_url, context)

    def timeline_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The timeline fragment the job page re-fetches when a live message says it moved."""
        job = get_object_or_404(MarketplaceJob, pk=object_id)
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        return TemplateResponse(
            request, "orchestration/_timeline.html", self._timeline_context(request, job)
        )

    def _timeline_context(self, request: HttpRequest, job: MarketplaceJob) -> dict[str, Any]:
        can_act = self.has_change_permission(request, job)
        status = job.status
        controls = {
            "retry": status in JOB_RETRYABLE_BY_STAFF,
            "retry_from_step": status in {*JOB_RETRYABLE_BY_STAFF, JobStatus.COMPLETED},
            "cancel": status not in JOB_TERMINAL or status == JobStatus.SKIPPED,
            # Not again while its reservation holds (it is already first in line).
            "run_now": status in {*JOB_RETRYABLE_BY_STAFF, *JOB_CLAIMABLE, JobStatus.PENDING}
            and not (job.direct and status in JOB_CLAIMABLE),
        }
        timeline = selectors.job_timeline(job.pk)
        tasks = [row["task"] for row in timeline["tasks"]]
        # "Retry from step" offers the step that failed (else the first unfinished one).
        failed = [t for t in tasks if t.status == "failed"]
        unfinished = [t for t in tasks if t.status != "completed"]
        default_step = (failed or unfinished or tasks[:1] or [None])[0]
        reserved = job.direct and status in (*JOB_CLAIMABLE, JobStatus.RUNNING)
        stopped_by = None
        if status == JobStatus.SKIPPED and job.batch_id:
            stopped_by = (
                MarketplaceJob.objects.filter(
                    batch_id=job.batch_id, sequence__lt=job.sequence,
                    status__in=[JobStatus.FAILED, JobStatus.CANCELLED],
                ).order_by("-sequence").only("id", "status", "sku").first()
            )  # fmt: skip
        return {
            "job": job,
            "can_act": can_act,
            "controls": controls if can_act else {},
            "default_step": default_step.step_order if default_step else None,
            "outlook": selectors.resource_outlook(job.resource_key) if reserved else None,
            "stopped_by": stopped_by,
            **timeline,
        }
