"""The tenant admin's "Product imports": the list of uploads, the "Import products" page
(the browser uploads in parts through the JSON API with the staff session) and the
rejected rows' CSV. Read-only over the rows: every change goes through the API's services.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from api.auth import WRITE_PERMISSION
from config.admin_sites import tenant_admin_site
from orchestration import steps
from uploads import selectors
from uploads.importing import CATALOG
from uploads.models import Upload
from uploads.services import UploadNotFound


@admin.register(Upload, site=tenant_admin_site)
class UploadAdmin(admin.ModelAdmin):
    list_display = ("filename", "state", "size_mib", "created_by", "created_at", "job_link",
                    "batch_link", "report_link")  # fmt: skip
    list_filter = ("state",)
    search_fields = ("filename",)
    show_full_result_count = False
    list_select_related = ("import_job",)
    readonly_fields = ("id", "filename", "size", "sha256", "part_size", "part_count", "state",
                       "format", "error_message", "created_by", "created_at", "completed_at",
                       "ended_at", "job_link", "batch_link", "report_link")  # fmt: skip
    fields = readonly_fields

    @admin.display(description="size (MiB)")
    def size_mib(self, obj: Upload) -> str:
        return f"{obj.size / 1024 / 1024:,.1f}"

    @admin.display(description="import job")
    def job_link(self, obj: Upload) -> str:
        if not obj.import_job_id:
            return "—"
        url = reverse("tenant_admin:orchestration_marketplacejob_change", args=[obj.import_job_id])
        status = obj.import_job.status if obj.import_job else ""
        return format_html('<a href="{}">Job {}</a> {}', url, obj.import_job_id, status)

    @admin.display(description="publish batch")
    def batch_link(self, obj: Upload) -> str:
        if not obj.publish_batch_id:
            return "—"
        url = reverse("tenant_admin:orchestration_batch_change", args=[obj.publish_batch_id])
        return format_html('<a href="{}">Batch {}</a>', url, obj.publish_batch_id)

    @admin.display(description="rejected rows")
    def report_link(self, obj: Upload) -> str:
        if not obj.import_job_id:
            return "—"
        url = reverse("tenant_admin:uploads_upload_report", args=[obj.pk])
        return format_html('<a href="{}">CSV</a>', url)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("import/", wrap(self.import_view), name="uploads_upload_import"),
            path(
                "<uuid:upload_id>/report.csv", wrap(self.report_view), name="uploads_upload_report"
            ),
            *super().get_urls(),
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(WRITE_PERMISSION)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # DELETE /api/uploads/{id} frees the files; a row delete would not

    def add_view(self, request, form_url="", extra_context=None):
        return HttpResponseRedirect(reverse("tenant_admin:uploads_upload_import"))

    def import_view(self, request: HttpRequest):
        if not request.user.has_perm(WRITE_PERMISSION):
            raise PermissionDenied
        marketplaces = [m for m in steps.registered_marketplaces() if m != CATALOG]
        context = {
            **self.admin_site.each_context(request),
            "title": "Import products",
            "opts": self.opts,
            "marketplaces": marketplaces,
            "csrf": get_token(request),
            "job_url_zero": reverse("tenant_admin:orchestration_marketplacejob_change", args=[0]),
            "report_url_zero": reverse(
                "tenant_admin:uploads_upload_report",
                args=["00000000-0000-0000-0000-000000000000"],
            ),
        }
        return TemplateResponse(request, "uploads/import.html", context)

    def report_view(self, request: HttpRequest, upload_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            upload = selectors.upload_get(upload_id)
        except UploadNotFound:
            raise Http404("no such upload") from None
        path_ = selectors.rejected_rows_path(upload)
        if path_ is None:
            raise Http404("this upload has no import report yet")
        return FileResponse(
            open(path_, "rb"),
            content_type="text/csv",
            as_attachment=True,
            filename=f"{upload.filename.rsplit('.', 1)[0]}-rejected.csv",
        )
