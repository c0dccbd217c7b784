"""Admin: "Plan a season" (a form over the plan parameters that queues a plan job, and the
list of plans), the stores and the sales history (read-only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from config.admin_sites import tenant_admin_site
from planning import selectors, services
from planning.forms import PlanForm
from planning.models import SeasonPlan, Store, WeeklySales
from planning.params import PRESETS


@admin.register(SeasonPlan, site=tenant_admin_site)
class SeasonPlanAdmin(admin.ModelAdmin):
    """Plans are engine jobs: the list links each to its job page (steps, outputs, runs)."""

    list_display = ("plan", "category", "preset", "status", "created_at", "completed_at")
    list_filter = ("status",)
    ordering = ("-created_at", "-id")
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest):
        return (
            super()
            .get_queryset(request)
            .filter(marketplace=selectors.MARKETPLACE, action=selectors.ACTION)
        )

    @admin.display(description="plan")
    def plan(self, obj: SeasonPlan) -> str:
        url = reverse("tenant_admin:orchestration_marketplacejob_change", args=[obj.pk])
        return format_html('<a href="{}">Plan #{}</a>', url, obj.pk)

    @admin.display(description="category")
    def category(self, obj: SeasonPlan) -> str:
        return str(obj.params.get("category", ""))

    @admin.display(description="preset")
    def preset(self, obj: SeasonPlan) -> str:
        return str(obj.params.get("preset", "")) or "—"

    def get_list_display_links(self, request: HttpRequest, list_display: Any) -> Any:
        return None  # no link to this proxy's page: the "plan" column links to the job page

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """The "Plan a season" page: validated like the API; queues one plan job."""
        if not self.has_add_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        form = PlanForm(request.POST or None, initial={"preset": "standard"})
        if request.method == "POST" and form.is_valid() and form.parameters is not None:
            job = services.plan_start(params=form.parameters,
                                      created_by=f"admin:{request.user.get_username()}")  # fmt: skip
            self.message_user(request, f"Plan #{job.pk} queued ({form.parameters.category}).")
            return HttpResponseRedirect(
                reverse("tenant_admin:orchestration_marketplacejob_change", args=[job.pk])
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Plan a season",
            "form": form,
            "presets": PRESETS,
            "history": selectors.history_summary(),
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/planning/plan_season.html", context)


@admin.register(Store, site=tenant_admin_site)
class StoreAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "cluster", "region", "size_sqm")
    list_filter = ("cluster",)
    search_fields = ("code", "name")


@admin.register(WeeklySales, site=tenant_admin_site)
class WeeklySalesAdmin(admin.ModelAdmin):
    list_display = ("week", "sku", "category", "store", "units")
    list_filter = ("category", "store__cluster")
    search_fields = ("sku",)
    show_full_result_count = False
    list_select_related = ("store",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
