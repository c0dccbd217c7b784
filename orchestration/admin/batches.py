"""The batch list and the batch page: live progress and counts, cancel and resume."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from config.admin_sites import tenant_admin_site
from orchestration import selectors, services
from orchestration.admin.batch_start import StartBatchAdmin
from orchestration.admin.display import job_counts, progress_bar, retry_width
from orchestration.admin.shared import EngineRowAdminMixin, LiveAdminMixin, audit
from orchestration.models import Batch, MarketplaceJob
from orchestration.paginators import EstimatedCountPaginator
from orchestration.states import BATCH_TERMINAL, JOB_TERMINAL, BatchStatus
from orchestration.templatetags.orchestration_ui import when


class BatchChangeList(ChangeList):
    """Reads the running and backing-off counts of the page's batches in one query."""

    def get_results(self, request):
        super().get_results(request)
        activity = selectors.batch_activity(b.pk for b in self.result_list)
        for batch in self.result_list:
            batch.activity = activity.get(batch.pk, {})


def _batch_controls(batch: Batch) -> dict[str, bool]:
    """Cancel while it runs; resume (retry the failed, put the rest back in line) when
    something did not complete; a batch that completed offers neither."""
    unfinished = batch.status not in BATCH_TERMINAL
    stopped = batch.failed_jobs + batch.cancelled_jobs + batch.skipped_jobs
    return {"cancel": unfinished, "resume": bool(stopped) and batch.status != BatchStatus.COMPLETED}


@admin.register(Batch, site=tenant_admin_site)
class BatchAdmin(EngineRowAdminMixin, LiveAdminMixin, StartBatchAdmin):
    list_display = ("id", "name_column", "status_badge", "progress", "counts", "next_column",
                    "created", "mode")  # fmt: skip
    list_display_links = ("id", "name_column")
    list_filter = ("status", "mode", "created_at")
    search_fields = ("name",)
    ordering = ("-created_at", "-id")
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    readonly_fields = ("name", "mode", "status", "live_progress", "total_jobs", "completed_jobs",
                       "failed_jobs", "cancelled_jobs", "skipped_jobs", "created_by", "created_at",
                       "started_at", "completed_at")  # fmt: skip
    fields = readonly_fields
    actions = ("cancel", "resume")

    def has_add_permission(self, request):
        return request.user.has_perm("orchestration.add_batch")

    terminal_statuses = frozenset(BATCH_TERMINAL)

    def save_model(self, request, obj, form, change):
        """Nothing of a batch is edited here (its counters move with its jobs; a save of the
        loaded copy would overwrite what workers counted meanwhile)."""

    def save_related(self, request, form, formsets, change):
        pass

    def delete_model(self, request, obj):
        # Job rows before the batch row (docs/engine.md, lock order); a job may have been
        # retried since the page was loaded.
        with transaction.atomic():
            unfinished = list(
                MarketplaceJob.objects.select_for_update()
                .filter(batch_id=obj.pk)
                .exclude(status__in=JOB_TERMINAL)
                .order_by("pk")
                .values_list("pk", flat=True)[:1]
            )
            status = (
                Batch.objects.select_for_update()
                .filter(pk=obj.pk)
                .values_list("status", flat=True)
                .first()
            )
            if unfinished or (status is not None and status not in BATCH_TERMINAL):
                raise PermissionDenied(f"batch {obj.pk} has unfinished jobs: cancel it first")
            super().delete_model(request, obj)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Batch) -> str:
        return format_html(
            '<span class="live-badge status-{}" data-live-batch-status="{}">{}</span>',
            obj.status, obj.pk, obj.status,
        )  # fmt: skip

    @admin.display(description="Progress")
    def progress(self, obj: Batch) -> str:
        return progress_bar(obj, getattr(obj, "activity", None))

    @admin.display(description="Progress")
    def live_progress(self, obj: Batch) -> str:
        return format_html("{} {}", progress_bar(obj), job_counts(obj))

    @admin.display(description="Jobs")
    def counts(self, obj: Batch) -> str:
        return job_counts(obj, getattr(obj, "activity", None))

    @admin.display(description="Name", ordering="name")
    def name_column(self, obj: Batch) -> str:
        return format_html('<span class="name-cell" title="{}">{}</span>', obj.name, obj.name)

    @admin.display(description="Next attempt")
    def next_column(self, obj: Batch) -> str:
        at = getattr(obj, "activity", {}).get("next_attempt_at")
        return when(at, "countdown") if at else ""

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: Batch) -> str:
        return when(obj.created_at)

    def get_changelist(self, request, **kwargs):
        return BatchChangeList

    @admin.action(description="Cancel the selected batches", permissions=["change"])
    def cancel(self, request, queryset):
        cancelled = 0
        for batch_id, status in queryset.values_list("pk", "status"):
            if status in BATCH_TERMINAL:
                self.message_user(request, f"Batch {batch_id} is {status}: nothing to cancel.",
                                  messages.WARNING)  # fmt: skip
                continue
            services.batch_cancel(batch_id=batch_id)
            audit(request, "batch.cancel", [("batch", batch_id)])
            cancelled += 1
        if cancelled:
            self.message_user(request, f"Cancelled {cancelled} batch(es).", messages.SUCCESS)

    @admin.action(description="Resume the selected groups", permissions=["change"])
    def resume(self, request, queryset):
        resumed = 0
        for batch_id in queryset.values_list("pk", flat=True):
            try:
                services.batch_resume(batch_id=batch_id)
                audit(request, "batch.resume", [("batch", batch_id)])
                resumed += 1
            except services.JobError as exc:  # a group with a job still queued or running
                self.message_user(request, str(exc), messages.WARNING)
        if resumed:
            self.message_user(request, f"Resumed {resumed} batch(es).", messages.SUCCESS)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:object_id>/control/<str:verb>/",
                wrap(require_POST(self.control_view)),
                name="orchestration_batch_control",
            ),
            path(
                "<int:object_id>/summary/",
                wrap(self.summary_view),
                name="orchestration_batch_summary",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        context = self.live_context(request, status_counts=selectors.batch_status_counts())
        return super().changelist_view(request, {**context, **(extra_context or {})})

    def summary_context(self, request: HttpRequest, batch: Batch) -> dict[str, Any]:
        can_act = self.has_change_permission(request, batch)
        activity = selectors.batch_activity([batch.pk]).get(batch.pk, {})
        return {
            "batch": batch,
            "activity": activity,
            "counts": job_counts(batch, activity),
            "retry_width": retry_width(batch, activity),
            "jobs": selectors.batch_jobs_page(batch.pk, request.GET.get("page", 1)),
            "can_act": can_act,
            "controls": _batch_controls(batch) if can_act else {},
        }

    def summary_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The batch page's live part (counts, times, buttons, its jobs), re-fetched when a
        message says the batch or one of its jobs moved."""
        batch = get_object_or_404(Batch, pk=object_id)
        if not self.has_view_permission(request, batch):
            raise PermissionDenied
        return TemplateResponse(
            request, "orchestration/_batch_summary.html", self.summary_context(request, batch)
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        context = self.live_context(request, **(extra_context or {}))
        batch = Batch.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        if batch is not None:
            context.update(self.summary_context(request, batch))
            context.update(title=f"Batch #{batch.pk} · {batch.name}", subtitle=None)
        context["terminal_statuses"] = [str(s) for s in BATCH_TERMINAL]
        # A details page: nothing to save (the controls above act through the services).
        context.update(show_save=False, show_save_and_continue=False,
                       show_save_and_add_another=False)  # fmt: skip
        return super().change_view(request, object_id, form_url, context)

    def control_view(self, request: HttpRequest, object_id: int, verb: str) -> HttpResponse:
        batch = get_object_or_404(Batch, pk=object_id)
        if not self.has_change_permission(request, batch):
            raise PermissionDenied
        if verb == "resume":
            try:
                services.batch_resume(batch_id=batch.pk)
                audit(request, "batch.resume", [("batch", batch.pk)])
                self.message_user(request, f"Resumed batch {batch.pk}.", messages.SUCCESS)
            except services.JobError as exc:
                self.message_user(request, str(exc), messages.WARNING)
        elif verb == "cancel":
            if batch.status in BATCH_TERMINAL:
                self.message_user(request, f"Batch {batch.pk} is {batch.status}: nothing to cancel.",
                                  messages.WARNING)  # fmt: skip
            else:
                services.batch_cancel(batch_id=batch.pk)
                audit(request, "batch.cancel", [("batch", batch.pk)])
                self.message_user(request, f"Cancelled batch {batch.pk}.", messages.SUCCESS)
        else:
            return HttpResponse(status=404)
        return HttpResponseRedirect(
            reverse("tenant_admin:orchestration_batch_change", args=[batch.pk])
        )
