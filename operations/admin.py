"""Bulk operations in the tenant admin: their list and page (progress n of N, re-read every
second while running, the result with the reasons of skipped jobs), and a Stop button.
Nothing is editable; operations are made by the job list's "… every matching job" buttons,
the dashboard, the API or ``manage.py jobs_bulk``."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import ActionLocation
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from audit.services import Actor, record
from config.admin_sites import tenant_admin_site
from operations import filters, services
from operations.models import Operation, RetentionPolicy
from orchestration.templatetags.orchestration_ui import when


def progress_html(operation: Operation) -> str:
    return format_html(
        '<div class="live-progress operation-progress" data-operation="{}" data-status="{}">'
        '<div class="live-bar" style="width: {}%"></div>'
        '<span class="live-label">{} of {}</span></div>',
        operation.pk, operation.status, operation.percent, operation.processed, operation.total,
    )  # fmt: skip


@admin.register(Operation, site=tenant_admin_site)
class OperationAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "progress", "what", "actor", "door", "created")
    list_filter = ("status", "kind")
    list_display_links = ("id", "kind")
    readonly_fields = ("kind", "status", "what", "actor", "door", "created_at", "started_at",
                       "finished_at")  # fmt: skip
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # the page is a details page; Stop has its own URL and check

    def has_delete_permission(self, request, obj=None):
        return False

    def get_actions(self, request, action_location=ActionLocation.CHANGE_LIST):
        return {}

    @admin.display(description="Progress")
    def progress(self, obj: Operation) -> str:
        return progress_html(obj)

    @admin.display(description="Jobs")
    def what(self, obj: Operation) -> str:
        return filters.describe(obj.job_filter)

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: Operation) -> str:
        return when(obj.created_at)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:object_id>/progress/", wrap(self.progress_view),
                 name="operations_operation_progress"),
            path("<int:object_id>/stop/", wrap(self.stop_view), name="operations_operation_stop"),
            *super().get_urls(),
        ]  # fmt: skip

    def _context(self, request: HttpRequest, operation: Operation) -> dict[str, Any]:
        reasons = sorted(operation.skipped_reasons.items(), key=lambda kv: -kv[1])
        return {
            "operation": operation,
            "progress": progress_html(operation),
            "reasons": reasons,
            "can_stop": not operation.finished
            and request.user.has_perm("orchestration.change_marketplacejob"),
        }

    def progress_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The live part of the page (re-fetched every second while it runs)."""
        operation = get_object_or_404(Operation, pk=object_id)
        if not self.has_view_permission(request, operation):
            raise PermissionDenied
        return TemplateResponse(
            request, "admin/operations/operation/_progress.html", self._context(request, operation)
        )

    def stop_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(status=405)
        if not request.user.has_perm("orchestration.change_marketplacejob"):
            raise PermissionDenied
        try:
            services.operation_cancel(
                operation_id=object_id, actor=Actor(request.user.get_username(), "admin")
            )
            self.message_user(request, f"Operation {object_id} stops before its next chunk.")
        except services.OperationError as exc:
            self.message_user(request, exc.message, messages.WARNING)
        return HttpResponseRedirect(
            reverse("tenant_admin:operations_operation_change", args=[object_id])
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        context = dict(extra_context or {})
        operation = (
            Operation.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        )
        if operation is not None:
            context.update(self._context(request, operation))
            context["title"] = f"Operation #{operation.pk} · {operation.get_kind_display()} jobs"
        return super().change_view(request, object_id, form_url, context)


@admin.register(RetentionPolicy, site=tenant_admin_site)
class RetentionPolicyAdmin(admin.ModelAdmin):
    """The tenant's retention settings (one row); changes are audited."""

    list_display = ("__str__", "jobs_days", "runs_days", "activity_days",
                    "webhook_deliveries_days", "uploads_days", "prune_hour", "last_pruned_at")  # fmt: skip
    readonly_fields = ("last_pruned_at", "last_result")

    def get_queryset(self, request):
        RetentionPolicy.objects.get_or_create(pk=1)
        return super().get_queryset(request)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if form.changed_data:
            record(request.user.get_username(), "admin", "retention.change",
                   [("retention", obj.pk)],
                   details={f: form.cleaned_data[f] for f in form.changed_data})  # fmt: skip
