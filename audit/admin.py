"""The "Activity" page: every recorded staff action, filterable, never editable."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from audit.models import AuditEntry
from config.admin_sites import tenant_admin_site
from orchestration.paginators import EstimatedCountPaginator


class DoorFilter(admin.SimpleListFilter):
    """Door kinds without a DISTINCT over the table: API tokens are grouped as "api"."""

    title = "door"
    parameter_name = "door"

    def lookups(self, request, model_admin):
        return [
            ("admin", "admin"),
            ("dashboard", "dashboard"),
            ("command", "command"),
            ("api", "API (any token or session)"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if value == "api":
            return queryset.filter(door__startswith="api")
        return queryset.filter(door=value)


class ObjectFilter(admin.SimpleListFilter):
    """``?object=job:12`` lists the entries naming one object (linked from job/batch pages)."""

    title = "object"
    parameter_name = "object"

    def lookups(self, request, model_admin):
        value = self.value()
        return [(value, value)] if value else []

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        kind, _, object_id = value.partition(":")
        if not kind or not object_id:
            return queryset.none()
        return queryset.filter(targets__contains=[[kind, object_id]])


@admin.register(AuditEntry, site=tenant_admin_site)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "actor", "door", "action", "objects_column", "count_column")
    list_filter = ("action", DoorFilter, ObjectFilter, "created_at")
    search_fields = ("actor", "action", "door")
    date_hierarchy = "created_at"
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    readonly_fields = (
        "created_at",
        "actor",
        "door",
        "action",
        "objects_column",
        "count",
        "details",
    )
    fields = readonly_fields
    list_per_page = 50

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="objects")
    def objects_column(self, obj: AuditEntry) -> str:
        shown = obj.targets[:5]
        links = format_html_join(", ", "{}", ((_object_link(kind, oid),) for kind, oid in shown))
        more = obj.object_count - len(shown)
        if more > 0:
            return format_html("{} … (+{})", links, more)
        return links

    @admin.display(description="count")
    def count_column(self, obj: AuditEntry) -> int:
        return obj.object_count


_ADMIN_PATHS = {
    "job": "orchestration/marketplacejob",
    "batch": "orchestration/batch",
    "schedule": "scheduler/schedule",
    "operation": "operations/operation",
    "resource": "orchestration/resourcepolicy",
}


def _object_link(kind: str, object_id: str) -> str:
    target = _ADMIN_PATHS.get(kind)
    if target and object_id.isdigit():
        return format_html(
            '<a href="/admin/{}/{}/change/">{} {}</a>', target, object_id, kind, object_id
        )
    return format_html("{} {}", kind, object_id)
