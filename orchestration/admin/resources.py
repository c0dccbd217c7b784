"""Resource limits, editable in place in the admin."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from config.admin_sites import tenant_admin_site
from orchestration import services
from orchestration.admin.shared import audit
from orchestration.engine.claims import resource_policies
from orchestration.models import ResourcePolicy


@admin.register(ResourcePolicy, site=tenant_admin_site)
class ResourcePolicyAdmin(admin.ModelAdmin):
    """Limits per resource, editable in place; the dispatcher reads them on every claim."""

    list_display = ("key", "concurrency", "rate_per_minute", "paused", "updated_at")
    list_editable = ("concurrency", "rate_per_minute", "paused")
    actions = ("pause", "resume")

    def get_queryset(self, request):
        resource_policies()  # rows for every registered provider exist before staff look
        return super().get_queryset(request)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if form.changed_data:
            audit(request, "resource.change_policy", [("resource", obj.key)],
                   details={f: form.cleaned_data[f] for f in form.changed_data})  # fmt: skip

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Pause the selected resources", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[ResourcePolicy]) -> None:
        for policy in queryset:
            services.resource_pause(key=policy.key)
        audit(request, "resource.pause", [("resource", p.key) for p in queryset])
        self.message_user(request, f"Paused {queryset.count()} resource(s).", messages.SUCCESS)

    @admin.action(description="Resume the selected resources", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[ResourcePolicy]) -> None:
        for policy in queryset:
            services.resource_resume(key=policy.key)
        audit(request, "resource.resume", [("resource", p.key) for p in queryset])
        self.message_user(request, f"Resumed {queryset.count()} resource(s).", messages.SUCCESS)
